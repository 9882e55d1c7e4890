//! The IPVS plane's side of `syn_rto`: which TCP VIPs should have which initial SYN
//! timeout, and what the watcher's map holds, kept in step across config reloads and
//! watcher reloads.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use tracing::{debug, info, warn};

use crate::watcher::Probes;

#[derive(Default)]
pub struct SynRtoVips {
    /// As last asked.
    wanted: BTreeMap<SocketAddr, Duration>,
    /// What the running watcher's map holds.
    applied: BTreeMap<SocketAddr, Duration>,
    /// Why the program is unavailable, once logged (not repeated on every reload).
    warned: Option<String>,
}

impl SynRtoVips {
    /// Asks for exactly `vips` and applies them to `probes` if there are any.
    pub fn set(&mut self, vips: &[(SocketAddr, Duration)], probes: Option<&mut Probes>) {
        self.wanted = vips.iter().copied().collect();
        if let Some(p) = probes {
            self.apply(p);
        }
    }

    /// A new watcher replaced the old one: its map is empty.
    pub fn reloaded(&mut self, probes: &mut Probes) {
        self.applied.clear();
        self.apply(probes);
    }

    fn apply(&mut self, probes: &mut Probes) {
        let gone: Vec<SocketAddr> = self
            .applied
            .keys()
            .filter(|v| !self.wanted.contains_key(v))
            .copied()
            .collect();
        for vip in gone {
            match probes.set_syn_rto(vip, None) {
                Ok(()) => {
                    self.applied.remove(&vip);
                }
                Err(e) => warn!("cannot restore the kernel's SYN timeout for {vip}: {e}"),
            }
        }
        for (&vip, &rto) in &self.wanted {
            if self.applied.get(&vip) == Some(&rto) {
                continue;
            }
            match probes.set_syn_rto(vip, Some(rto)) {
                Ok(()) => {
                    let ms = rto.as_millis() as u64;
                    // Adaptive timeouts change often: only the first is worth a line.
                    if self.applied.insert(vip, rto).is_none() {
                        info!(%vip, syn_rto_ms = ms, "SYN timeout set");
                    } else {
                        debug!(%vip, syn_rto_ms = ms, "SYN timeout set");
                    }
                }
                Err(e) => {
                    if self.warned.as_deref() != Some(e.as_str()) {
                        warn!("syn_rto not applied; VIPs keep the kernel's 1 s SYN timeout: {e}");
                        self.warned = Some(e);
                    }
                    return;
                }
            }
        }
    }
}
