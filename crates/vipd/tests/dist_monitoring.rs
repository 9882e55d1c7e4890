//! The monitoring files in dist/ against the metrics the daemon renders: every metric
//! the Grafana dashboard and the alert rules query exists, the rules load and pass
//! their unit tests, and the exposition passes `promtool check metrics`. promtool comes
//! with the Debian package `prometheus` (scripts/setup.sh installs it); without it
//! these tests fail.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, SystemTime},
};

use vipd::{daemon::metrics::Metrics, health::State};

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// Runs promtool with `args` in `dir`, `stdin` on its standard input.
fn promtool(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("promtool")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; it comes with the Debian package prometheus (scripts/setup.sh)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every series name the daemon's exposition can hold: each family's name from its
/// `# TYPE` line, and a histogram's `_bucket`, `_sum` and `_count`.
fn rendered_names() -> BTreeSet<String> {
    let text = Metrics::new().render();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_owned());
        }
    }
    assert!(names.len() > 10, "{text}");
    names
}

/// Series Prometheus makes itself for every target.
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// The metric names a PromQL expression (or any text holding some) refers to: every
/// `vipd_` identifier, and any other identifier followed by a label selector.
fn names_in(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = c.is_ascii_alphabetic() || c == b'_';
        let after_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !starts || after_word {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &expr[start..i];
        let selector = expr[i..].trim_start().starts_with('{');
        if word.starts_with("vipd_") || selector {
            out.push(word.to_owned());
        }
    }
    out
}

fn check_names(what: &str, expr: &str, known: &BTreeSet<String>) -> usize {
    let names = names_in(expr);
    for name in &names {
        assert!(
            known.contains(name) || PROMETHEUS_SERIES.contains(&name.as_str()),
            "{what}: `{name}` is not a metric vipd renders (in `{expr}`)"
        );
    }
    names.len()
}

/// Every `expr` of the dashboard's panels (rows included) and the queries of its
/// variables.
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(dist().join("grafana/vipd.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_dashboard_queries_only_metrics_vipd_renders() {
    let known = rendered_names();
    let d = dashboard();
    let mut exprs = Vec::new();
    queries(&d, &mut exprs);
    assert!(exprs.len() >= 15, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let n = check_names("grafana/vipd.json", e, &known);
        assert!(n > 0, "grafana/vipd.json: `{e}` queries no metric");
        used.extend(names_in(e));
    }
    // What an operator opens it for.
    for wanted in [
        "vipd_backend_state",
        "vipd_quarantines_total",
        "vipd_fault_to_quarantine_seconds_bucket",
        "vipd_config_last_reload_successful",
        "vipd_watcher_mode",
        "vipd_weight_write_failures_total",
        "vipd_reconcile_failures_total",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

#[test]
fn the_dashboard_is_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "vipd");
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().unwrap();
        assert!(ids.insert(id), "panel id {id} twice");
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{p}");
        }
        assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24);
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            }
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "instance", "service"]);
}

#[test]
fn the_alert_rules_load_and_query_only_metrics_vipd_renders() {
    let dir = dist().join("prometheus");
    let text = std::fs::read_to_string(dir.join("vipd-alerts.yml")).unwrap();
    let known = rendered_names();
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .collect();
    assert!(exprs.len() >= 6, "{text}");
    for e in &exprs {
        assert!(check_names("vipd-alerts.yml", e, &known) > 0, "{e}");
    }
    // vipd's names in the descriptions too.
    for name in names_in(&text).iter().filter(|n| n.starts_with("vipd_")) {
        assert!(
            known.contains(name),
            "vipd-alerts.yml: `{name}` is not rendered"
        );
    }
    assert_success(
        "promtool check rules",
        &promtool(&dir, &["check", "rules", "vipd-alerts.yml"], ""),
    );
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let dir = dist().join("prometheus");
    let tests = std::fs::read_to_string(dir.join("vipd-alerts.test.yml")).unwrap();
    let tested: BTreeSet<&str> = tests
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("alertname:"))
        .map(str::trim)
        .collect();
    assert!(tested.len() >= 2, "{tested:?}");
    assert_success(
        "promtool test rules",
        &promtool(&dir, &["test", "rules", "vipd-alerts.test.yml"], ""),
    );
}

#[test]
fn the_exposition_passes_promtool() {
    // Every state, odd label values, every histogram bucket, every counter moved.
    let m = Metrics::new();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    m.config_loaded(start);
    for (i, ok) in [true, false].into_iter().enumerate() {
        m.reload(ok, start + Duration::from_secs(60 * (i as u64 + 1)));
    }
    for (i, state) in State::ALL.into_iter().enumerate() {
        let backend = format!("198.18.1.{i}:8080");
        m.set_backend("web", &backend, i as u32, state);
        m.outcome("web", &backend, "refused");
        m.quarantine("web", &backend, "refused");
    }
    m.set_backend("we\"ird\\", "a\nb", 1, State::Healthy);
    m.set_panic("web", false);
    for seconds in [0.0005, 0.003, 0.3, 1.2, 30.0] {
        m.fault_to_quarantine("syn_retransmit", seconds);
    }
    m.set_watcher_mode("full");
    m.set_lost_events(3);
    m.set_unattributed(4);
    m.set_decode_failures(1);
    m.reconcile_ops("ipvs", 7);
    m.reconcile_failure();
    m.weight_write_failures(2);
    let text = m.render();
    let out = promtool(Path::new("."), &["check", "metrics"], &text);
    assert_success(&format!("promtool check metrics on\n{text}"), &out);
    // promtool's lint findings go to its output even when it succeeds.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.trim().is_empty(), "promtool check metrics: {said}");
}

#[test]
fn names_are_found_in_promql() {
    assert_eq!(
        names_in(r#"sum by (le) (rate(vipd_a_bucket{instance=~"$i"}[5m])) / up{job="x"}"#),
        ["vipd_a_bucket", "up"]
    );
    assert_eq!(names_in("label_values(vipd_b, service)"), ["vipd_b"]);
    assert_eq!(names_in("rate(typo_total {x=\"1\"}[1m])"), ["typo_total"]);
    assert!(names_in("sum(rate(x[1m]))").is_empty());
}
