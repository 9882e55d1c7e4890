//! `vipd check` against the host: run inside a network namespace this test creates (a
//! host with one uplink), the VIPs of a valid config are checked against its interfaces,
//! addresses and routes, and every conflict is reported at file:line:col. Needs root
//! (namespaces); no IPVS.

mod xdp_common;

use std::process::{Command, Output};

use xdp_common::Netns;

/// A namespace whose uplink `up0` (a veth; the host kernel has no dummy driver) holds 198.18.250.2/24 and fd00:18:fa::2/64,
/// and a directory holding `vipd.toml` with `text`.
fn host(case: &str, text: &str) -> (Netns, std::path::PathBuf) {
    let ns = Netns::new("check");
    ns.run(
        "ip link add up0 type veth peer name up0p && ip link set up0p up && ip link set up0 up && \
         ip addr add 198.18.250.2/24 dev up0 && \
         ip addr add fd00:18:fa::2/64 dev up0 nodad && \
         ip route add 198.18.0.77/32 dev up0 proto static",
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("check_host")
        .join(case);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vipd.toml"), text.trim_start()).unwrap();
    (ns, dir)
}

fn check(ns: &Netns, dir: &std::path::Path) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(env!("CARGO_BIN_EXE_vipd"))
        .current_dir(dir)
        .env_remove("VIPD_LOG")
        .args(["check", "--config", "vipd.toml", "--state-file"])
        .arg(dir.join("no-record.json"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// The lines of `err` but the notes on what this host's kernel lacks for IPVS (the
/// development host has no IPVS modules and no kprobes; notes, not errors): at most two.
fn without_kernel_notes(err: &str) -> Vec<&str> {
    let (kernel, rest): (Vec<&str>, Vec<&str>) = err
        .lines()
        .partition(|l| l.starts_with("note: kernel ") || l.starts_with("note: whether kernel "));
    assert!(kernel.len() <= 2, "{err}");
    rest
}

#[test]
fn vips_that_are_local_inside_a_connected_subnet_or_already_routed_are_located() {
    let (ns, dir) = host(
        "conflicts",
        r#"
[[service]]
name = "own-address"
vip = "198.18.250.2:80"
backend = [{ address = "198.18.250.5:8080" }]

[[service]]
name = "in-subnet"
vip = "[fd00:18:fa::9]:80"
backend = [{ address = "[fd00:18:fa::5]:8080" }]

[[service]]
name = "routed"
vip = "198.18.0.77:80"
backend = [{ address = "198.18.250.5:8080" }]

[[service]]
name = "fine"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.250.5:8080" }]
"#,
    );
    let out = check(&ns, &dir);
    let err = text(&out.stderr);
    let lines = without_kernel_notes(&err);
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with("vipd.toml:3:7: VIP 198.18.250.2 is an address of interface up0"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(
            "vipd.toml:8:7: VIP fd00:18:fa::9 is inside fd00:18:fa::2/64, the subnet of interface up0"
        ),
        "{err}"
    );
    assert!(
        lines[2].starts_with(
            "vipd.toml:13:7: VIP 198.18.0.77 already has a route that vipd did not make"
        ),
        "{err}"
    );
    assert_eq!(lines[3], "vipd.toml: 3 errors on this host");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(1));
    // Read-only: nothing was created.
    assert!(!ns.run("ip -o link show").contains("vipd0"));
}

#[test]
fn a_vip_equal_to_a_backend_is_refused_from_the_file_alone() {
    let (ns, dir) = host(
        "vip-is-backend",
        r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.250.5:8080" }]

[[service]]
name = "b"
vip = "198.18.0.11:53"
protocol = "udp"
backend = [{ address = "198.18.0.10:53" }]
"#,
    );
    let out = check(&ns, &dir);
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "vipd.toml:3:7: VIP 198.18.0.10 is also the address of backend 198.18.0.10:53 of service \"b\""
        ),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_good_config_passes_and_an_unroutable_backend_is_a_note() {
    let (ns, dir) = host(
        "good",
        r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.250.5:8080" }, { address = "198.51.100.7:8080" }]
"#,
    );
    let out = check(&ns, &dir);
    let err = text(&out.stderr);
    assert_eq!(
        without_kernel_notes(&err),
        ["note: VIP 198.18.0.10: no route to backend 198.51.100.7"],
        "{err}"
    );
    assert_eq!(text(&out.stdout), "vipd.toml: ok: 1 service, 2 backends\n");
    assert_eq!(out.status.code(), Some(0));
}
