//! Any text, compiled: never a panic; a valid config's output compiles again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orrery_config::{CompileOptions, NoOrbs, compile, print};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let compiled = compile(text, &CompileOptions::new("fuzz.yml"), &NoOrbs);
    if let Some(plan) = compiled.plan {
        let body = print::render_body(&plan);
        let again = compile(&body, &CompileOptions::new("again.yml"), &NoOrbs);
        assert!(again.plan.is_some(), "processed output does not compile:\n{body}");
    }
});
