//! Any text as a filter expression: parse and evaluate without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orrery_config::expr::{ExprValue, Expression};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(e) = Expression::parse(text) {
        let _ = e.evaluate(&|name: &str| (name == "pipeline.git.branch").then(|| ExprValue::Str("main".into())));
    }
});
