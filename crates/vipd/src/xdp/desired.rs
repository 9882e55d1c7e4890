//! From the config to what the XDP data plane should hold: every VIP:port service with
//! its backends and weights (the config's, or effective ones from the health machine).

use vipd_common::{IPPROTO_TCP, IPPROTO_UDP};

use super::XdpServiceSpec;
use crate::config::{BackendSpec, Config, Protocol, ServiceKey, ServiceSpec};

/// The services of `config` with each backend's weight from `weight`. Fwmark services
/// (which the config rejects with xdp) are left out.
pub fn specs_with(
    config: &Config,
    weight: impl Fn(&ServiceSpec, &BackendSpec) -> u32,
) -> Vec<XdpServiceSpec> {
    config
        .services
        .iter()
        .filter_map(|s| {
            let ServiceKey::Addr { protocol, addr } = s.key else {
                return None;
            };
            Some(XdpServiceSpec {
                vip: addr,
                protocol: match protocol {
                    Protocol::Tcp => IPPROTO_TCP as u8,
                    Protocol::Udp => IPPROTO_UDP as u8,
                },
                backends: s.backends.iter().map(|b| (b.addr, weight(s, b))).collect(),
            })
        })
        .collect()
}

/// The services of `config` with their configured weights.
pub fn specs(config: &Config) -> Vec<XdpServiceSpec> {
    specs_with(config, |_, b| u32::from(b.weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_become_specs_with_weights() {
        let cfg = crate::config::parse(
            "t.toml",
            "dataplane = \"xdp\"\n[xdp]\ninterface = \"eth0\"\n\
             [[service]]\nname = \"w\"\nvip = \"198.18.100.1:80\"\n\
             backend = [{ address = \"198.18.2.11:8080\", weight = 2 }, { address = \"198.18.2.12:8080\" }]\n\
             [[service]]\nname = \"d\"\nvip = \"198.18.100.1:53\"\nprotocol = \"udp\"\n",
        )
        .unwrap();
        let s = specs(&cfg);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].protocol, IPPROTO_TCP as u8);
        assert_eq!(
            s[0].backends,
            vec![
                ("198.18.2.11:8080".parse().unwrap(), 2),
                ("198.18.2.12:8080".parse().unwrap(), 1)
            ]
        );
        assert_eq!(s[1].protocol, IPPROTO_UDP as u8);
        assert!(s[1].backends.is_empty());
    }
}
