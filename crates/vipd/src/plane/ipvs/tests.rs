use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::{
    model::{BackendId, Protocol, Vip},
    plane::Held,
};

fn b(n: u8) -> BackendId {
    BackendId::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, n)), 53)
}

/// The reconciler writes only what differs from the config: a lower weight, or a
/// backend held out of IPVS.
#[test]
fn overrides_are_the_held_weights_that_differ_from_the_config() {
    let dns = ServiceKey::Addr(Vip::new(Protocol::Udp, "198.18.0.10:53".parse().unwrap()));
    let held = |configured, weight| Held { configured, weight };
    let mut w = Weights::default();
    w.insert(dns, b(1), held(10, Some(10)));
    w.insert(dns, b(2), held(10, Some(3)));
    w.insert(dns, b(3), held(10, None));
    w.insert(dns, b(4), held(0, Some(0)));
    let o = overrides(&w);
    let key = ipvs_key(dns);
    assert_eq!(
        key,
        vipd_ipvs::ServiceKey::udp("198.18.0.10".parse().unwrap(), 53)
    );
    let want: Vec<_> = [((key, b(2)), Some(3)), ((key, b(3)), None)].into();
    assert_eq!(o.0.into_iter().collect::<Vec<_>>(), want);
}
