//! Builds the in-job `circleci` binary (crate `orrery-task`) as a static
//! executable, so the agent can embed it and copy it into any job image.
//!
//! The build uses its own target directory under `OUT_DIR` (the outer build
//! holds the workspace's) and `-C target-feature=+crt-static` for the target
//! only. `ORRERY_TASK_BINARY` may name a prebuilt binary instead.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=../orrery-task/src");
    println!("cargo:rerun-if-changed=../orrery-task/Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORRERY_TASK_BINARY");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let binary = match std::env::var("ORRERY_TASK_BINARY") {
        Ok(prebuilt) => PathBuf::from(prebuilt),
        Err(_) => build_task_binary(&out_dir),
    };
    println!(
        "cargo:rustc-env=ORRERY_TASK_BINARY_PATH={}",
        binary.display()
    );
}

fn build_task_binary(out_dir: &std::path::Path) -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let manifest = manifest_dir.join("../orrery-task/Cargo.toml");
    let target = std::env::var("TARGET").expect("TARGET");
    let target_dir = out_dir.join("task-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "orrery-task",
            "--bin",
            "circleci",
            "--target",
            &target,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=symbols",
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo to build the in-job circleci binary");
    assert!(
        status.success(),
        "building the in-job circleci binary (orrery-task) failed"
    );
    target_dir.join(target).join("release").join("circleci")
}
