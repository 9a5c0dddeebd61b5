//! Runs the built binary in the test's fixture directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures")
}

/// The path of `examples/NAME.toml`.
pub fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

/// What a run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    pub fn success(self) -> String {
        assert_eq!(self.code, 0, "{}", self.stderr);
        self.stdout
    }

    /// Asserts exit 1 and returns stderr.
    pub fn failure(self) -> String {
        assert_eq!(self.code, 1, "stdout:\n{}", self.stdout);
        self.stderr
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadscore"));
    command.args(args).current_dir(fixtures());
    command
}

/// `leadscore --db DB serve --listen 127.0.0.1:0 EXTRA…` with stdout
/// discarded and its log (stderr) piped, for tests that run the server as
/// a process; spawn it after adding what the test needs.
pub fn serve_process(db: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadscore"));
    command
        .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs `leadscore ARGS` with the fixtures directory as working directory
/// (so error messages show short relative paths).
pub fn leadscore(args: &[&str]) -> Run {
    leadscore_env(args, &[])
}

/// [`leadscore`] with these environment variables set.
pub fn leadscore_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = command(args)
        .envs(env.iter().copied())
        .output()
        .expect("leadscore runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// Runs `leadscore score --model examples/MODEL.toml ARGS`.
pub fn score(model: &str, args: &[&str]) -> Run {
    let model = example(model);
    let mut all = vec!["score", "--model", &model];
    all.extend_from_slice(args);
    leadscore(&all)
}

/// Runs `leadscore ARGS` with stdout closed before it writes anything.
pub fn with_stdout_closed(args: &[&str]) -> Run {
    let mut child = command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("leadscore runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("leadscore ends");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// Generates a data set into a new temporary directory; returns it and the
/// paths of its events and contacts files.
pub fn generated(contacts: &str, days: &str, seed: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().display().to_string();
    leadscore(&[
        "generate",
        "--contacts",
        contacts,
        "--days",
        days,
        "--seed",
        seed,
        "--out",
        &out,
    ])
    .success();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (events, crm) = (path("events.jsonl"), path("contacts.csv"));
    (dir, events, crm)
}
