//! Writes the binary and JSON seeds of the fuzz corpus (`corpus/<target>/`) with vipd's
//! own types and writers, so that the seeds are what vipd and its kernel programs really
//! produce. The text seeds (tracefs format files, configs) are copies of real files.
//!
//! `cargo run --manifest-path crates/vipd/fuzz/Cargo.toml --example seeds`

mod btf_blob;

use std::{
    fs,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use vipd::{
    daemon::{admin::Drains, control_proto::Request, persist::HealthRecord},
    health::{PersistedBackend, PersistedService, State},
    kernel::{btf::Btf, offsets},
    reconcile::state,
};
use vipd_common::{
    xdp::{XdpHealthEvent, XdpHealthKind},
    ConnEvent, EventKind, AF_INET, AF_INET6,
};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("creating the corpus directory");
    dir
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    fs::write(corpus(target).join(name), bytes).expect("writing a seed");
}

/// The bytes of a plain `#[repr(C)]` record, as the kernel program writes it.
fn raw<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: T is one of vipd-common's records: integers and byte arrays with explicit
    // padding fields, so every byte is initialized.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("an IPv6 address").octets()
}

fn events() {
    let base = ConnEvent {
        ts_ns: 1_000_000,
        sock: 0xffff_8880_1234_5678,
        family: AF_INET as u8,
        protocol: 6,
        sport: 40000,
        dport: 80,
        saddr: v4([10, 0, 0, 1]),
        daddr: v4([198, 18, 0, 10]),
        ..Default::default()
    };
    let state_change = ConnEvent {
        kind: EventKind::StateChange as u8,
        old_state: 2,
        new_state: 1,
        backend_family: AF_INET as u8,
        backend_addr: v4([198, 18, 1, 2]),
        backend_port: 8080,
        ..base
    };
    let ipvs_conn = ConnEvent {
        kind: EventKind::IpvsConn as u8,
        sock: 0,
        backend_family: AF_INET6 as u8,
        backend_addr: v6("fd00:18::2"),
        backend_port: 8080,
        fwmark: 5,
        ..base
    };
    let retransmit = ConnEvent {
        kind: EventKind::Retransmit as u8,
        family: AF_INET6 as u8,
        old_state: 2,
        saddr: v6("fd00:18::1"),
        daddr: v6("fd00:18::10"),
        ..base
    };
    let icmp = ConnEvent {
        kind: EventKind::IcmpError as u8,
        protocol: 17,
        old_state: 3,
        new_state: 3,
        dport: 53,
        ..base
    };
    write("event", "state_change_v4", raw(&state_change));
    write("event", "ipvs_conn_v4_to_v6", raw(&ipvs_conn));
    write("event", "retransmit_v6", raw(&retransmit));
    write("event", "icmp_error", raw(&icmp));
}

fn xdp_records() {
    let refused = XdpHealthEvent {
        ts_ns: 42,
        kind: XdpHealthKind::Refused as u8,
        family: AF_INET as u8,
        protocol: 6,
        cport: 40000,
        vport: 80,
        bport: 8080,
        client: v4([10, 0, 0, 1]),
        vip: v4([198, 18, 100, 1]),
        backend: v4([198, 18, 1, 2]),
        ..Default::default()
    };
    let unreachable = XdpHealthEvent {
        kind: XdpHealthKind::Unreachable as u8,
        family: AF_INET6 as u8,
        protocol: 17,
        icmp_type: 1,
        icmp_code: 4,
        client: v6("fd00:18::1"),
        vip: v6("fd00:18::100"),
        backend: v6("fd00:18::2"),
        ..refused
    };
    write("xdp_record", "refused_v4", raw(&refused));
    write("xdp_record", "unreachable_v6", raw(&unreachable));
}

fn btf() {
    let (base, split) = btf_blob::kernel_and_module();
    let framed = |base: &[u8], split: &[u8]| {
        let mut out = (base.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(base);
        out.extend_from_slice(split);
        out
    };
    // The seeds reach every look-up vipd does.
    let btf = Btf::parse(&base, Some(&split)).expect("the seed BTF parses");
    offsets::sock(&btf).expect("struct sock offsets");
    offsets::skb(&btf).expect("struct sk_buff offsets");
    offsets::ip_vs_conn(&btf).expect("struct ip_vs_conn offsets");
    offsets::ip_vs_conn_param(&btf).expect("struct ip_vs_conn_param offsets");
    write("btf", "vmlinux", framed(&base, &[]));
    write("btf", "vmlinux_and_ip_vs", framed(&base, &split));
}

fn control_requests() {
    let backend: SocketAddr = "198.18.1.2:8080".parse().expect("an address");
    let requests = [
        ("status", Request::Status),
        (
            "reload",
            Request::Reload {
                config: Some("/etc/vipd/vipd.toml".into()),
            },
        ),
        (
            "drain",
            Request::Drain {
                service: "web".into(),
                backend,
            },
        ),
        (
            "quarantine",
            Request::Quarantine {
                service: "web".into(),
                backend: "[fd00:18::2]:53".parse().expect("an address"),
                for_ms: Some(60_000),
            },
        ),
    ];
    // The first byte is the size of the reads the line arrives in (0: one read).
    for (i, (name, request)) in requests.into_iter().enumerate() {
        let mut seed = vec![[0, 1, 7, 64][i % 4]];
        seed.extend(request.to_line());
        write("control_request", name, seed);
    }
}

fn http_requests() {
    let heads: [(&str, &[u8]); 4] = [
        (
            "get",
            b"\0GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9477\r\nAccept: */*\r\n\r\n",
        ),
        ("head_in_pieces", b"\x05HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
        (
            "post",
            b"\0POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        ),
        ("bare_newlines", b"\x03GET /other HTTP/1.1\nHost: x\n\n"),
    ];
    for (name, head) in heads {
        write("http_request", name, head);
    }
}

fn health_record() {
    let backend = |address: &str, state| PersistedBackend {
        address: address.parse::<IpAddr>().expect("an address"),
        port: 8080,
        state,
        refusals: 0,
        retransmits: 0,
        check_failures: 0,
        ejections: 0,
        quarantines: 0,
        quarantined_until_ms: None,
        slow_start_since_ms: None,
        clean_since_ms: None,
        last_change_ms: None,
    };
    let ms = 1_700_000_000_000;
    let web = PersistedService {
        panic: false,
        backends: vec![
            PersistedBackend {
                clean_since_ms: Some(ms - 60_000),
                last_change_ms: Some(ms - 60_000),
                ..backend("198.18.1.1", State::Healthy)
            },
            PersistedBackend {
                refusals: 1,
                ejections: 2,
                quarantines: 3,
                quarantined_until_ms: Some(ms + 30_000),
                last_change_ms: Some(ms - 1_000),
                ..backend("198.18.1.2", State::Quarantined)
            },
            PersistedBackend {
                slow_start_since_ms: Some(ms - 5_000),
                ..backend("198.18.1.3", State::SlowStart)
            },
        ],
    };
    let dns = PersistedService {
        panic: true,
        backends: vec![
            backend("fd00:18::2", State::Probing),
            PersistedBackend {
                retransmits: 2,
                check_failures: 1,
                ..backend("fd00:18::3", State::Failing)
            },
        ],
    };
    let mut record = HealthRecord {
        version: 1,
        ..HealthRecord::default()
    };
    record.services.insert("tcp 198.18.0.10:80".into(), web);
    record.services.insert("udp [fd00:18::10]:53".into(), dns);
    let text = serde_json::to_string_pretty(&record).expect("a record serializes");
    write("health_record", "two_services", text);
}

fn drain_record() {
    let mut drains = Drains {
        version: 1,
        ..Drains::default()
    };
    let at = |s: &str| s.parse::<SocketAddr>().expect("an address");
    drains.add("web", at("198.18.1.2:8080"), 1_700_000_000_123);
    drains.add("web", at("198.18.1.3:8080"), 1_700_000_000_456);
    drains.add("dns", at("[fd00:18::2]:53"), 1_700_000_001_000);
    let text = serde_json::to_string_pretty(&drains).expect("drains serialize");
    write("drain_record", "three_drains", text);
}

/// An ownership record as vipd writes it ([`state::to_json`]), from the record it reads.
fn ownership_record() {
    let read = r#"{
      "version": 1,
      "services": [
        {"key": {"tcp": "198.18.0.10:80"}, "name": "web", "removal": "drain_tcp",
         "drain_timeout_ms": 30500},
        {"key": {"fwmark": {"family": "ipv6", "mark": 9}}, "name": "mark",
         "removal": "expire", "drain_timeout_ms": 1000},
        {"key": {"protocol": {"number": 132, "addr": "[fd00:18::10]:9"}}, "name": "sctp",
         "removal": "drain_flows", "drain_timeout_ms": 0}
      ],
      "drains": [{"service": {"tcp": "198.18.0.10:80"}, "backend": "198.18.1.2:8080",
                  "since_unix_ms": 1700000000123}],
      "interfaces": ["vipd0"],
      "routes": [{"interface": "vipd0", "vip": "198.18.0.11"},
                 {"interface": "vipd0", "vip": "fd00:18::11"}],
      "addresses": [{"interface": "vipd0", "address": "198.18.0.10"}]
    }"#;
    let owned = state::from_json(Path::new("state.json"), read).expect("a valid record");
    write(
        "ownership_record",
        "services_drains_routes",
        state::to_json(&owned),
    );
}

fn main() {
    events();
    xdp_records();
    btf();
    control_requests();
    http_requests();
    health_record();
    drain_record();
    ownership_record();
    println!("seeds written under {}", corpus("").display());
}
