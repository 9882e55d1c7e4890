//! What the kernel holds: every IPVS service, and the destinations of the services asked
//! for. Dumps interrupted by a concurrent change are retried; a dump that lists the same
//! service or destination twice is refused as a bad reply.

use std::collections::BTreeMap;

use vipd_ipvs::{Client, Destination, Service, ServiceKey};

use super::{desired::DestId, error::ReconcileError};

/// How often an interrupted dump is tried again.
const DUMP_ATTEMPTS: usize = 5;

/// One service as dumped, with its destinations if they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelService {
    pub service: Service,
    /// Empty when the destinations were not asked for.
    pub dests: BTreeMap<DestId, Destination>,
}

/// The kernel's IPVS table (of the network namespace the client was opened in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub services: BTreeMap<ServiceKey, KernelService>,
}

impl Snapshot {
    /// Dumps every service, and the destinations of those for which `with_dests` is true.
    pub fn read(
        client: &mut Client,
        with_dests: impl Fn(&ServiceKey) -> bool,
    ) -> Result<Snapshot, ReconcileError> {
        let list = retry("the IPVS services", || client.services())?;
        let mut services = BTreeMap::new();
        for s in list {
            let key = s.key;
            let dests = if with_dests(&key) {
                let what = format!("the backends of {key}");
                dest_map(&key, retry(&what, || client.destinations(&key))?)?
            } else {
                BTreeMap::new()
            };
            let entry = KernelService { service: s, dests };
            if services.insert(key, entry).is_some() {
                return Err(ReconcileError::BadDump(format!(
                    "the service dump lists {key} twice"
                )));
            }
        }
        Ok(Snapshot { services })
    }
}

fn dest_map(
    key: &ServiceKey,
    list: Vec<Destination>,
) -> Result<BTreeMap<DestId, Destination>, ReconcileError> {
    let mut out = BTreeMap::new();
    for d in list {
        let id = DestId::new(d.addr, d.port);
        if out.insert(id, d).is_some() {
            return Err(ReconcileError::BadDump(format!(
                "the backend dump of {key} lists {id} twice"
            )));
        }
    }
    Ok(out)
}

fn retry<T>(
    what: &str,
    mut f: impl FnMut() -> Result<T, vipd_ipvs::Error>,
) -> Result<T, ReconcileError> {
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(vipd_ipvs::Error::DumpInterrupted { .. }) if attempt < DUMP_ATTEMPTS => {
                attempt += 1
            }
            Err(source) => {
                return Err(ReconcileError::Dump {
                    what: what.to_owned(),
                    source,
                })
            }
        }
    }
}
