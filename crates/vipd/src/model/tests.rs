use super::*;
use crate::reconcile::desired::ipvs_key;

fn keys() -> Vec<crate::config::ServiceKey> {
    let addr = |protocol, a: &str| crate::config::ServiceKey::Addr {
        protocol,
        addr: a.parse().unwrap(),
    };
    vec![
        addr(Protocol::Udp, "198.18.0.10:53"),
        addr(Protocol::Tcp, "198.18.0.10:80"),
        addr(Protocol::Tcp, "198.18.0.9:443"),
        addr(Protocol::Tcp, "[fd00:18::10]:80"),
        addr(Protocol::Udp, "[fd00:18::10]:53"),
        crate::config::ServiceKey::Fwmark {
            family: Family::Ipv6,
            mark: 5,
        },
        crate::config::ServiceKey::Fwmark {
            family: Family::Ipv4,
            mark: 7,
        },
    ]
}

/// The health record and `vipd status` keep the text they had when services were keyed
/// by IPVS's type.
#[test]
fn text_is_the_ipvs_key_text() {
    for k in keys() {
        assert_eq!(ServiceKey::from(k).to_string(), ipvs_key(&k).to_string());
    }
    assert_eq!(
        ServiceKey::from(keys()[0]).to_string(),
        "udp 198.18.0.10:53"
    );
}

/// Services are listed in the order they were listed in when keyed by IPVS's type.
#[test]
fn order_is_the_ipvs_key_order() {
    let mut ours: Vec<ServiceKey> = keys().into_iter().map(ServiceKey::from).collect();
    let mut theirs: Vec<vipd_ipvs::ServiceKey> = keys().iter().map(ipvs_key).collect();
    ours.sort();
    theirs.sort();
    let ours: Vec<String> = ours.iter().map(ToString::to_string).collect();
    let theirs: Vec<String> = theirs.iter().map(ToString::to_string).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn ip_protocol_numbers_round_trip() {
    let a: SocketAddr = "198.18.0.10:53".parse().unwrap();
    let v = Vip::from_ip_proto(17, a).unwrap();
    assert_eq!(v, Vip::new(Protocol::Udp, a));
    assert_eq!(v.ip_proto(), 17);
    assert!(v.is_udp());
    assert_eq!(Vip::from_ip_proto(6, a).unwrap().ip_proto(), 6);
    assert_eq!(Vip::from_ip_proto(132, a), None);
}

fn backend(a: &str) -> BackendId {
    BackendId::from(a.parse::<SocketAddr>().unwrap())
}

/// A backend reads as its socket address in logs, metrics labels and `vipd status`
/// (text and JSON), as it did when it was an (address, port) pair.
#[test]
fn backend_text_is_the_socket_address() {
    for a in ["198.18.1.1:8080", "[fd00:18::1]:53", "198.18.1.2:0"] {
        let b = backend(a);
        assert_eq!(b.to_string(), a);
        assert_eq!(serde_json::to_value(b).unwrap(), serde_json::json!(a));
        assert_eq!(SocketAddr::from(b), a.parse::<SocketAddr>().unwrap());
    }
    let b = BackendId::new("fd00:18::1".parse().unwrap(), 53);
    assert_eq!((b.ip, b.port), ("fd00:18::1".parse().unwrap(), 53));
}

/// Backends sort as the (address, port) pairs did: by address, then port.
#[test]
fn backend_order_is_the_pair_order() {
    let texts = [
        "[fd00:18::1]:53",
        "198.18.1.10:80",
        "198.18.1.2:8080",
        "198.18.1.2:80",
        "198.18.1.2:0",
    ];
    let mut ours: Vec<BackendId> = texts.iter().map(|a| backend(a)).collect();
    let mut pairs: Vec<(IpAddr, u16)> = ours.iter().map(|b| (b.ip, b.port)).collect();
    ours.sort();
    pairs.sort();
    let ours: Vec<(IpAddr, u16)> = ours.iter().map(|b| (b.ip, b.port)).collect();
    assert_eq!(ours, pairs);
    assert_eq!(ours[0].1, 0);
}
