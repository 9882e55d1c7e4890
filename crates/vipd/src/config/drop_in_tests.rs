//! Drop-in files (`conf.d/*.toml`) and `[defaults]`: merge order, checks across files,
//! each error in the file it is in, inheritance and override.

use std::time::Duration;

use super::*;

fn set(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(path, text)| Source {
            path: PathBuf::from(path),
            text: text.strip_prefix('\n').unwrap_or(text).to_owned(),
        })
        .collect()
}

fn ok(files: &[(&str, &str)]) -> Config {
    parse_set(&set(files)).unwrap_or_else(|d| panic!("unexpected errors:\n{d}"))
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match parse_set(&set(files)) {
        Ok(cfg) => panic!("expected errors, got {cfg:#?}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

const MAIN: &str = r#"
[daemon]
drain_timeout = "1m"

[[service]]
name = "main"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.2:8080" }]
"#;

/// A drop-in with one service of one backend.
fn one_service(name: &str, vip: &str, backend: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nbackend = [{{ address = \"{backend}\" }}]\n"
    )
}

fn api() -> String {
    one_service("api", "198.18.0.11:80", "198.18.1.3:8080")
}

fn web() -> String {
    one_service("web", "198.18.0.12:80", "198.18.1.4:8080")
}

#[test]
fn services_come_main_file_first_then_drop_ins_in_the_order_given() {
    let cfg = ok(&[
        ("vipd.toml", MAIN),
        ("conf.d/10-api.toml", &api()),
        ("conf.d/20-web.toml", &web()),
    ]);
    let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["main", "api", "web"]);
    // The main file's [daemon] applies to the drop-ins' services.
    assert!(cfg
        .services
        .iter()
        .all(|s| s.drain_timeout == Duration::from_secs(60)));
    // A VIP's place names the file it is in.
    let place = &cfg.origin.vips[&"198.18.0.12".parse().unwrap()];
    assert_eq!(place.file, "conf.d/20-web.toml");
    assert_eq!(place.location.to_string(), "3:7");
    assert_eq!(cfg.origin.file, "vipd.toml");
}

#[test]
fn the_set_is_the_same_config_as_one_file_holding_everything() {
    let one = super::parse("vipd.toml", &format!("{MAIN}\n{}{}", api(), web())).unwrap();
    let many = ok(&[
        ("vipd.toml", MAIN),
        ("conf.d/a.toml", &api()),
        ("conf.d/b.toml", &web()),
    ]);
    assert_eq!(one, many);
}

#[test]
fn duplicate_names_and_vips_across_files_name_both_places() {
    let again = one_service("api", "198.18.0.10:80", "198.18.1.9:8080");
    assert_eq!(
        errors(&[
            ("vipd.toml", MAIN),
            ("conf.d/10-api.toml", &api()),
            ("conf.d/20-again.toml", &again),
        ]),
        [
            "conf.d/20-again.toml:2:8: duplicate service name \"api\" (first declared at conf.d/10-api.toml:2:8)",
            "conf.d/20-again.toml:3:7: duplicate VIP 198.18.0.10:80/tcp (first declared by service \"main\" at vipd.toml:6:7)",
        ]
    );
}

#[test]
fn an_error_in_one_drop_in_is_reported_in_that_file_and_the_others_are_still_checked() {
    let bad_syntax = "[[service]\nname = \"x\"\n";
    let bad_value = r#"
[[service]]
name = "web"
vip = "198.18.0.12:80"
scheduler = "wrrr"
backend = [{ address = "198.18.1.4:8080", weight = 70000 }]
"#;
    let all = errors(&[
        ("vipd.toml", MAIN),
        ("conf.d/10-api.toml", &api()),
        ("conf.d/20-broken.toml", bad_syntax),
        ("conf.d/30-web.toml", bad_value),
    ]);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].starts_with("conf.d/20-broken.toml:1:"), "{all:#?}");
    assert!(all[0].contains("invalid TOML"), "{all:#?}");
    assert_eq!(
        all[1],
        "conf.d/30-web.toml:4:13: unknown scheduler \"wrrr\" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos; did you mean \"wrr\"?)"
    );
    assert_eq!(
        all[2],
        "conf.d/30-web.toml:5:52: weight 70000 out of range (0..=65535)"
    );
}

#[test]
fn a_drop_in_holds_services_only() {
    let with_daemon = r#"
[daemon]
vip_interface = "lb1"

[defaults]
scheduler = "rr"

[[service]]
name = "api"
vip = "198.18.0.11:80"
"#;
    let all = errors(&[("vipd.toml", MAIN), ("conf.d/api.toml", with_daemon)]);
    assert_eq!(
        all,
        [
            "conf.d/api.toml:1:1: `daemon` belongs in the main config file: a drop-in file (conf.d/*.toml) holds only [[service]] tables",
            "conf.d/api.toml:4:1: `defaults` belongs in the main config file: a drop-in file (conf.d/*.toml) holds only [[service]] tables",
        ]
    );
}

#[test]
fn a_vip_in_one_file_that_is_a_backend_in_another_is_reported_at_the_vip() {
    let uses_vip = one_service("api", "198.18.0.11:80", "198.18.0.10:8080");
    assert_eq!(
        errors(&[("vipd.toml", MAIN), ("conf.d/api.toml", &uses_vip)]),
        ["vipd.toml:6:7: VIP 198.18.0.10 is also the address of backend 198.18.0.10:8080 of service \"api\": a VIP is routed to vipd's interface on this host, so that backend would be unreachable"]
    );
}

#[test]
fn the_service_limit_counts_every_file() {
    let mut main = String::new();
    for i in 0..validate::MAX_SERVICES {
        main.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"198.19.{}.{}:80\"\n",
            i / 256,
            i % 256
        ));
    }
    let all = errors(&[("vipd.toml", &main), ("conf.d/one-more.toml", &api())]);
    assert_eq!(
        all,
        ["conf.d/one-more.toml:1:1: 4097 services: at most 4096 (the kernel's VIP map holds that many); this is the first one over"]
    );
}

#[test]
fn services_inherit_defaults_and_override_them_key_by_key() {
    let main = r#"
[defaults]
scheduler = "rr"
drain_timeout = "20s"
  [defaults.health]
  refuse_threshold = 3
  base_ejection = "5s"
  slow_start = "10s"

[[service]]
name = "plain"
vip = "198.18.0.10:80"

[[service]]
name = "own"
vip = "198.18.0.11:53"
protocol = "udp"
scheduler = "wrr"
drain_timeout = "2s"
  [service.health]
  refuse_threshold = 1
  silence_window = "500ms"
"#;
    let cfg = ok(&[("vipd.toml", main), ("conf.d/web.toml", &web())]);
    let [plain, own, web] = &cfg.services[..] else {
        panic!("{cfg:#?}")
    };
    for s in [plain, web] {
        assert_eq!(s.scheduler, Scheduler::RoundRobin, "{}", s.name);
        assert_eq!(s.drain_timeout, Duration::from_secs(20), "{}", s.name);
        let h = s.health.as_ref().unwrap();
        assert_eq!(h.refuse_threshold, Some(3));
        assert_eq!(h.base_ejection, Some(Duration::from_secs(5)));
        assert_eq!(h.slow_start, Some(Duration::from_secs(10)));
        assert_eq!(h.max_ejection, None);
    }
    assert_eq!(own.scheduler, Scheduler::WeightedRoundRobin);
    assert_eq!(own.drain_timeout, Duration::from_secs(2));
    let h = own.health.as_ref().unwrap();
    assert_eq!(h.refuse_threshold, Some(1), "the service's own value wins");
    assert_eq!(h.silence_window, Some(Duration::from_millis(500)));
    assert_eq!(h.base_ejection, Some(Duration::from_secs(5)), "inherited");
}

#[test]
fn no_defaults_leave_services_as_before() {
    let cfg = ok(&[("vipd.toml", MAIN)]);
    assert_eq!(cfg.services[0].health, None);
    assert_eq!(cfg.services[0].scheduler, Scheduler::DEFAULT);
}

#[test]
fn defaults_are_checked_like_the_service_keys_they_stand_for() {
    let main = r#"
[daemon]
drain_timeout = "1m"

[defaults]
scheduler = "fastest"
drain_timeout = "20s"
weight = 3
  [defaults.health]
  syn_rto = "200ms"
  max_ejection = "1s"

[[service]]
name = "web"
vip = "198.18.0.10:80"
  [service.health]
  base_ejection = "5s"
"#;
    assert_eq!(
        errors(&[("vipd.toml", main)]),
        [
            "vipd.toml:5:13: unknown scheduler \"fastest\" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)",
            "vipd.toml:6:17: drain_timeout is set both here and in [daemon] (at vipd.toml:2:17); keep one",
            "vipd.toml:7:1: unknown key `weight` in [defaults] (expected one of scheduler, drain_timeout, health)",
            "vipd.toml:9:13: `syn_rto` cannot be a default: it depends on the service's protocol; set it in the service's [service.health] (defaults may set refuse_threshold, retransmit_threshold, base_ejection, max_ejection, max_ejection_percent, panic_threshold, slow_start)",
            "vipd.toml:15:3: base_ejection 5s is longer than max_ejection 1s (one of them from [defaults.health])",
        ]
    );
}
