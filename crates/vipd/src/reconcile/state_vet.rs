//! An ownership record lists what vipd created, and vipd changes and removes what it
//! lists. An entry vipd could not have written (a service no config can declare, a drain
//! of a service the record does not own, a backend that is no unicast address) is
//! planted or corrupt: it is dropped with a warning as the record is read, so that it is
//! never acted on. A service dropped so is foreign from then on: never changed or
//! removed, and a config that declares it is refused as a conflict.

use vipd_ipvs::{Protocol, ServiceKey};

use super::state::{OwnedService, Ownership};
use crate::config::not_unicast;

/// Why vipd could not have created `key` as `owned`, if it could not.
fn impossible_service(key: &ServiceKey, owned: &OwnedService) -> Option<String> {
    let name_ok = (1..=64).contains(&owned.name.len())
        && owned
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !name_ok {
        return Some(format!(
            "the name {:?} is no valid service name",
            owned.name
        ));
    }
    match *key {
        ServiceKey::Addr { protocol, .. } if !matches!(protocol, Protocol::Tcp | Protocol::Udp) => {
            Some("vipd makes TCP and UDP services only".to_owned())
        }
        ServiceKey::Addr { port: 0, .. } => Some("a VIP has a port".to_owned()),
        ServiceKey::Addr { addr, .. } => {
            not_unicast(addr).map(|why| format!("a VIP is a unicast address, not {why}"))
        }
        ServiceKey::Fwmark { mark: 0, .. } => Some("a firewall mark is never 0".to_owned()),
        ServiceKey::Fwmark { .. } => None,
    }
}

/// Drops the entries of `o` vipd could not have written; returns a line for each, as
/// also logged.
pub(super) fn vet(o: &mut Ownership, path: &std::path::Path) -> Vec<String> {
    let mut dropped = Vec::new();
    o.services
        .retain(|key, owned| match impossible_service(key, owned) {
            Some(why) => {
                dropped.push(format!("service {key} ({why})"));
                false
            }
            None => true,
        });
    let services = &o.services;
    o.drains.retain(|(key, backend), _| {
        let why = if !services.contains_key(key) {
            Some("a service the record does not own".to_owned())
        } else {
            not_unicast(backend.ip).map(|why| format!("a backend is no {why} address"))
        };
        match why {
            Some(why) => {
                dropped.push(format!("drain of {backend} in service {key} ({why})"));
                false
            }
            None => true,
        }
    });
    for d in &dropped {
        tracing::warn!(
            record = %path.display(),
            "ownership record: ignoring an entry vipd could not have written, never acting on it: {d}"
        );
    }
    dropped
}
