//! `syn_rto` through the core: the plane gets every TCP VIP's timeout at start and
//! again on each accepted reload.

use std::time::Duration;

use super::tests::{config, web_with, Rig};
use crate::config::{AutoRto, SynRto};

fn with_syn_rto(rto: &str) -> String {
    format!("{}  [service.health]\n  syn_rto = \"{rto}\"\n", web_with(2))
}

#[tokio::test(start_paused = true)]
async fn the_plane_gets_the_syn_rto_of_each_tcp_vip_at_start_and_on_reload() {
    let mut r = Rig::new(&with_syn_rto("200ms"));
    let vip = "198.18.0.10:80".parse().unwrap();
    assert_eq!(
        r.plane.syn_rto,
        vec![(vip, SynRto::Fixed(Duration::from_millis(200)))]
    );

    assert!(r.reload(Ok(config(&with_syn_rto("300ms")))));
    assert_eq!(
        r.plane.syn_rto,
        vec![(vip, SynRto::Fixed(Duration::from_millis(300)))]
    );

    assert!(r.reload(Ok(config(&with_syn_rto("auto")))));
    assert_eq!(
        r.plane.syn_rto,
        vec![(vip, SynRto::Auto(AutoRto::default()))]
    );

    assert!(r.reload(Ok(config(&with_syn_rto("off")))));
    assert!(r.plane.syn_rto.is_empty(), "{:?}", r.plane.syn_rto);
}
