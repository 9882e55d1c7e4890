//! `vipd check --config FILE`, run as a binary: exit codes and output.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A fresh directory holding `vipd.toml` with `text`.
fn config_dir(case: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("config_check")
        .join(case);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vipd.toml"), text).unwrap();
    dir
}

/// Runs `vipd check --config-only --config <config>` in `dir` (the file alone; the
/// checks against the host are in check_host.rs, inside namespaces of their own).
fn check(dir: &Path, config: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(dir)
        .env_remove("VIPD_LOG")
        .args(["check", "--config-only", "--config", config])
        .output()
        .unwrap()
}

/// Asserts a passing check: `summary` on stdout, nothing on stderr, exit 0.
fn assert_passes(out: &Output, summary: &str) {
    assert_eq!(stderr(out), "");
    assert_eq!(stdout(out), summary);
    assert_eq!(out.status.code(), Some(0));
}

/// `vipd check --config-only --json --config vipd.toml` in `dir`: its exit code and JSON.
fn check_json(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(dir)
        .env_remove("VIPD_LOG")
        .args(["check", "--config-only", "--json", "--config", "vipd.toml"])
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_str(&stdout(&out)).unwrap(),
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn the_example_config_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = check(&root, "examples/vipd.toml");
    assert_passes(&out, "examples/vipd.toml: ok: 6 services, 11 backends\n");
}

#[test]
fn a_valid_config_gets_a_one_line_summary() {
    let dir = config_dir(
        "valid",
        r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.2:8080" }]
"#,
    );
    let out = check(&dir, "vipd.toml");
    assert_eq!(stdout(&out), "vipd.toml: ok: 1 service, 1 backend\n");
    assert_eq!(stderr(&out), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_empty_config_is_valid() {
    let dir = config_dir("empty", "");
    let out = check(&dir, "vipd.toml");
    assert_eq!(stdout(&out), "vipd.toml: ok: 0 services, 0 backends\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn every_error_is_printed_with_its_location_then_a_count() {
    let dir = config_dir(
        "invalid",
        r#"[daemon]
drain_timeout = "5min"

[[service]]
name = "web"
vip = "198.18.0.10:80"
scheduler = "wrrr"

  [[service.backend]]
  address = "[fd00:18:1::2]:8080"

[[service]]
name = "web2"
vip = "198.18.0.10:80"
  [[service.backend]]
  address = "198.18.1.2:70000"
  weight = 100
"#,
    );
    let out = check(&dir, "vipd.toml");
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        [
            "vipd.toml:2:17: `drain_timeout`: invalid duration \"5min\": unknown unit \"min\" (expected ms, s, m or h)",
            "vipd.toml:7:13: unknown scheduler \"wrrr\" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos; did you mean \"wrr\"?)",
            "vipd.toml:10:13: address family mismatch: backend \"[fd00:18:1::2]:8080\" is IPv6 but VIP 198.18.0.10:80/tcp is IPv4 (only forwarding = \"tunnel\" can mix families)",
            "vipd.toml:14:7: duplicate VIP 198.18.0.10:80/tcp (first declared by service \"web\" at vipd.toml:6:7)",
            "vipd.toml:16:13: port 70000 out of range (1..=65535) in backend address \"198.18.1.2:70000\"",
            "vipd.toml: 5 errors",
            "",
        ]
        .join("\n")
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_syntax_error_is_located() {
    let dir = config_dir("syntax", "[[service]\nname = \"web\"\n");
    let out = check(&dir, "vipd.toml");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(
        lines[0],
        "vipd.toml:1:10: invalid TOML: invalid table header: expected `.`, `]]`"
    );
    assert_eq!(lines[1], "vipd.toml: 1 error");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = config_dir("missing", "");
    let out = check(&dir, "nope.toml");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("nope.toml: cannot read the config: "),
        "{err}"
    );
    assert_eq!(lines[1], "nope.toml: 1 error");
    assert_eq!(stdout(&out), "");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn without_a_config_argument_the_default_or_vipd_config_is_read() {
    let help = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = stdout(&help);
    assert!(help.contains("[env: VIPD_CONFIG=]"), "{help}");
    assert!(help.contains("[default: /etc/vipd/vipd.toml]"), "{help}");
    let dir = config_dir("env", "");
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["check", "--config-only"])
        .env("VIPD_CONFIG", dir.join("vipd.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("vipd.toml: ok: 0 services"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn json_output_has_every_error_with_its_location() {
    let text = "[[service]]\nname = \"web\"\nvip = \"198.18.0.10:80\"\nscheduler = \"wrrr\"\nbackend = [{ address = \"198.18.1.2:8080\" }]\n";
    let dir = config_dir("json-bad", text);
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(&dir)
        .args(["check", "--config-only", "--json", "--config", "vipd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["stage"], "config");
    assert_eq!(v["errors"][0]["file"], "vipd.toml");
    assert_eq!(v["errors"][0]["line"], 4);
    assert_eq!(v["errors"][0]["column"], 13);
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("unknown scheduler \"wrrr\""),
        "{message}"
    );

    let good = config_dir("json-good", &text.replace("wrrr", "wrr"));
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(&good)
        .args(["check", "--config-only", "--json", "--config", "vipd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["services"], 1);
    assert_eq!(v["backends"], 1);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
}

#[test]
fn a_file_too_large_to_be_a_config_is_refused_unread() {
    let dir = config_dir("huge", "");
    let big = "# padding\n".repeat(900_000);
    std::fs::write(dir.join("vipd.toml"), big).unwrap();
    let out = check(&dir, "vipd.toml");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("vipd.toml: the file is larger than 8 MiB; is this the config?"),
        "{err}"
    );
}

#[test]
fn ten_thousand_services_are_refused_at_the_first_over_the_limit() {
    let mut text = String::new();
    for i in 0..10_000u32 {
        text.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"198.18.{}.{}:80\"\nbackend = [{{ address = \"198.19.0.1:8080\" }}]\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let dir = config_dir("ten-thousand", &text);
    let out = check(&dir, "vipd.toml");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // Service 4097 starts on line 4 * 4096 + 1.
    assert!(
        err.starts_with(&format!(
            "vipd.toml:{}:1: 10000 services: at most 4096 (the kernel's VIP map holds that many)",
            4 * 4096 + 1
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "one error, then the count: {err}");
}

#[test]
fn more_backends_than_a_service_may_have_are_refused() {
    let backends: Vec<String> = (0..1025u32)
        .map(|i| {
            format!(
                "{{ address = \"198.19.{}.{}:8080\" }}",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let text = format!(
        "[[service]]\nname = \"big\"\nvip = \"198.18.0.10:80\"\nbackend = [\n{}\n]\n",
        backends.join(",\n")
    );
    let dir = config_dir("many-backends", &text);
    let out = check(&dir, "vipd.toml");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("vipd.toml:1029:1: 1025 backends: a service has at most 1024"),
        "{err}"
    );
}

/// `config_dir` plus drop-in files in its `conf.d`.
fn config_dir_with_drop_ins(case: &str, main: &str, drop_ins: &[(&str, &str)]) -> PathBuf {
    let dir = config_dir(case, main);
    let conf_d = dir.join("conf.d");
    let _ = std::fs::remove_dir_all(&conf_d);
    std::fs::create_dir_all(&conf_d).unwrap();
    for (name, text) in drop_ins {
        std::fs::write(conf_d.join(name), text).unwrap();
    }
    dir
}

const MAIN: &str = "[defaults]\nscheduler = \"rr\"\n\n[[service]]\nname = \"web\"\nvip = \"198.18.0.10:80\"\nbackend = [{ address = \"198.18.1.2:8080\" }]\n";
const API: &str = "[[service]]\nname = \"api\"\nvip = \"198.18.0.11:80\"\nbackend = [{ address = \"198.18.1.3:8080\" }, { address = \"198.18.1.4:8080\" }]\n";

#[test]
fn check_validates_the_main_file_and_its_drop_ins_as_one_config() {
    let dir = config_dir_with_drop_ins(
        "drop-ins-ok",
        MAIN,
        &[
            ("20-api.toml", API),
            ("README", "not a config"),
            ("10-empty.toml", ""),
        ],
    );
    let out = check(&dir, "vipd.toml");
    assert_passes(&out, "vipd.toml + 2 drop-ins: ok: 2 services, 3 backends\n");

    let (code, v) = check_json(&dir);
    assert_eq!(code, Some(0));
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["drop_ins"],
        serde_json::json!(["conf.d/10-empty.toml", "conf.d/20-api.toml"])
    );
    assert_eq!(v["services"], 2);
}

#[test]
fn check_reports_each_error_in_the_drop_in_it_is_in() {
    let again = "[[service]]\nname = \"web\"\nvip = \"198.18.0.12:80\"\nscheduler = \"wrrr\"\n";
    let dir = config_dir_with_drop_ins(
        "drop-ins-bad",
        MAIN,
        &[("20-api.toml", API), ("30-again.toml", again)],
    );
    let out = check(&dir, "vipd.toml");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "conf.d/30-again.toml:2:8: duplicate service name \"web\" (first declared at vipd.toml:5:8)\n\
         conf.d/30-again.toml:4:13: unknown scheduler \"wrrr\" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos; did you mean \"wrr\"?)\n\
         vipd.toml + 2 drop-ins: 2 errors\n"
    );

    let (code, v) = check_json(&dir);
    assert_eq!(code, Some(1));
    assert_eq!(v["errors"][1]["file"], "conf.d/30-again.toml");
    assert_eq!(v["errors"][1]["line"], 4);
    assert_eq!(v["errors"][1]["column"], 13);
}
