//! Each data plane's kernel object holds its own programs and maps and nothing of
//! another plane's.

use std::collections::BTreeSet;

use aya_obj::Object;

/// The maps (not the sections of globals, whose names begin with a dot) and the
/// programs of an object.
fn contents(object: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    let obj = Object::parse(object).expect("a kernel object vipd embeds parses");
    let maps = obj
        .maps
        .keys()
        .filter(|m| !m.starts_with('.'))
        .cloned()
        .collect();
    (maps, obj.programs.keys().cloned().collect())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn the_xdp_object_holds_only_the_xdp_plane() {
    let (maps, programs) = contents(crate::xdp::loader::OBJECT);
    assert_eq!(
        maps,
        set(&[
            "XDP_BACKENDS",
            "XDP_FLOWS",
            "XDP_HEALTH",
            "XDP_MAGLEV",
            "XDP_REPLIES",
            "XDP_SERVICES",
            "XDP_STATS",
            "XDP_SYN_WATCH",
        ])
    );
    assert_eq!(
        programs,
        set(&[
            crate::xdp::loader::LB_PROGRAM,
            crate::xdp::loader::PASS_PROGRAM
        ])
    );
}

#[test]
fn the_watcher_object_holds_no_xdp_program_or_map() {
    let (maps, programs) = contents(crate::watcher::loader::OBJECT);
    assert_eq!(
        maps,
        set(&[
            "CONNS",
            "EVENTS",
            "FWMARK_SERVICES",
            "ICMP6_SEEN",
            "LOST",
            "NAT_FLOWS",
            "SYN_RTO",
            "UDP_TRAFFIC",
            "VIPS",
            "VIP_PORTS",
        ])
    );
    assert!(programs.contains("inet_sock_set_state"), "{programs:?}");
    assert!(programs.contains("syn_rto"), "{programs:?}");
    let foreign: Vec<&String> = programs.iter().filter(|p| p.contains("xdp")).collect();
    assert!(
        foreign.is_empty(),
        "XDP programs in the watcher's object: {foreign:?}"
    );
}

#[test]
fn the_socket_object_holds_only_the_socket_plane() {
    let (maps, programs) = contents(crate::sockplane::loader::OBJECT);
    assert_eq!(
        maps,
        set(&[
            "SOCK_AFFINITY",
            "SOCK_BACKENDS",
            "SOCK_CONNECT_NEXT",
            "SOCK_HEALTH",
            "SOCK_PEERS",
            "SOCK_SERVICES",
            "SOCK_STATS",
            "SOCK_STICKY_TCP",
            "SOCK_SYN_RTO",
            "SOCK_SYN_RTO_VIPS",
            "SOCK_UDP_FLOWS",
            "SOCK_UDP_SENT"
        ])
    );
    let want: Vec<&str> = crate::sockplane::loader::program_names()
        .chain([
            crate::sockplane::reset::RESET_PROGRAM,
            crate::sockplane::error_report::ERROR_PROGRAM,
        ])
        .chain(crate::sockplane::udp_err::PROGRAMS.map(|(name, _)| name))
        .collect();
    assert_eq!(programs, set(&want));
}
