//! Runs the built binary in the test's fixture directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures")
}

/// The repository's examples directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// What a run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `leadscore ARGS` with the fixtures directory as working directory
/// (so error messages show short relative paths).
pub fn leadscore(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(args)
        .current_dir(fixtures())
        .output()
        .expect("leadscore runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}
