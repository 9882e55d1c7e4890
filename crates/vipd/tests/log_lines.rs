//! The log lines of the `vipd` binary as an operator's tools see them: with stderr
//! connected to the journal (`JOURNAL_STREAM` naming stderr's device and inode, as
//! systemd sets it) every line carries its syslog priority and text lines no timestamp;
//! `--log-format json` gives one JSON object per line. The command is `vipd run` of a
//! config that does not load: it fails before touching the kernel, and its error is
//! logged.

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A fresh directory holding an invalid `vipd.toml`.
fn dir(case: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("log_lines")
        .join(case);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("vipd.toml"),
        "[[service]]\nname = \"web\"\nvip = \"not an address\"\n",
    )
    .unwrap();
    dir
}

/// How `JOURNAL_STREAM` is set for the run.
enum Journal {
    /// Naming the file stderr goes to.
    Stderr,
    /// Naming another file: stderr is not the journal.
    Other,
}

/// Runs `vipd run` on the invalid config in `dir` with `args` added, stderr going to a
/// file; returns what it wrote there.
fn run(dir: &Path, journal: Journal, args: &[&str]) -> String {
    let path = dir.join("stderr");
    let stderr = File::create(&path).unwrap();
    let named = match journal {
        Journal::Stderr => std::fs::metadata(&path).unwrap(),
        Journal::Other => std::fs::metadata(dir.join("vipd.toml")).unwrap(),
    };
    let status = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(dir)
        .env_remove("VIPD_LOG")
        .env_remove("VIPD_LOG_FORMAT")
        .env("JOURNAL_STREAM", format!("{}:{}", named.dev(), named.ino()))
        .args(["run", "--config", "vipd.toml", "--runtime-dir"])
        .arg(dir.join("run"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .status()
        .unwrap();
    // 78: the config is invalid (EX_CONFIG), nothing was touched.
    assert_eq!(status.code(), Some(78));
    std::fs::read_to_string(&path).unwrap()
}

/// `2024-01-02T03:04:05...` at the start of `s`.
fn looks_like_a_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

#[test]
fn journal_text_lines_carry_the_error_priority() {
    let out = run(&dir("journal-text"), Journal::Stderr, &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 2, "{out}");
    for l in &lines {
        let rest = l.strip_prefix("<3>").unwrap_or_else(|| panic!("{out}"));
        // No timestamp: journald adds its own.
        assert!(!looks_like_a_timestamp(rest), "{out}");
        assert!(!rest.contains('\x1b'), "{out}");
    }
    assert!(lines[0].starts_with("<3>ERROR vipd"), "{out}");
    assert!(out.contains("vipd.toml:3:"), "{out}");
    assert!(out.contains("nothing was applied"), "{out}");
}

#[test]
fn journal_json_lines_are_prefixed_objects() {
    let out = run(
        &dir("journal-json"),
        Journal::Stderr,
        &["--log-format", "json"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one event, one line: {out}");
    let body = lines[0]
        .strip_prefix("<3>")
        .unwrap_or_else(|| panic!("{out}"));
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["level"], "ERROR", "{out}");
    assert!(v["target"].as_str().unwrap().starts_with("vipd"), "{out}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("vipd.toml:3:"), "{out}");
    assert!(message.contains("nothing was applied"), "{out}");
    let ts = v["timestamp"].as_str().unwrap();
    assert!(ts.contains('T') && ts.ends_with('Z'), "{out}");
}

#[test]
fn the_environment_chooses_json_too() {
    let dir = dir("env-json");
    let path = dir.join("stderr");
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(&dir)
        .env_remove("VIPD_LOG")
        .env_remove("JOURNAL_STREAM")
        .env("VIPD_LOG_FORMAT", "json")
        .args(["run", "--config", "vipd.toml", "--runtime-dir"])
        .arg(dir.join("run"))
        .stderr(File::create(&path).unwrap())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(78));
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect(&text);
    assert_eq!(v["level"], "ERROR", "{text}");
}

#[test]
fn another_stream_is_not_the_journal() {
    let out = run(&dir("not-journal"), Journal::Other, &[]);
    assert!(!out.contains("<3>"), "{out}");
    // A person at a terminal gets the plain error.
    assert!(out.starts_with("vipd: "), "{out}");
    assert!(out.contains("nothing was applied"), "{out}");
}
