//! The kernel's `VIP_PORTS` map: one byte per destination port, 1 while some watched
//! VIP uses the port. The socket hooks test it before anything else, so a connection to
//! any other port costs them one array lookup. This side counts the VIPs on each port
//! and writes the byte when the count leaves or reaches zero.

use std::collections::HashMap;

use aya::maps::{Array, MapData, MapError};

pub struct VipPorts {
    map: Array<MapData, u8>,
    counts: PortCounts,
}

impl VipPorts {
    pub fn new(map: Array<MapData, u8>) -> Self {
        Self {
            map,
            counts: PortCounts::default(),
        }
    }

    /// One more VIP uses `port`.
    pub fn add(&mut self, port: u16) -> Result<(), MapError> {
        if self.counts.add(port) {
            self.map.set(u32::from(port), 1, 0)?;
        }
        Ok(())
    }

    /// One VIP fewer uses `port`.
    pub fn remove(&mut self, port: u16) -> Result<(), MapError> {
        if self.counts.remove(port) {
            self.map.set(u32::from(port), 0, 0)?;
        }
        Ok(())
    }
}

/// How many VIPs use each port.
#[derive(Debug, Default)]
struct PortCounts(HashMap<u16, usize>);

impl PortCounts {
    /// Counts one more VIP on `port`; true if it is the first.
    fn add(&mut self, port: u16) -> bool {
        let n = self.0.entry(port).or_default();
        *n += 1;
        *n == 1
    }

    /// Counts one VIP fewer on `port`; true if it was the last.
    fn remove(&mut self, port: u16) -> bool {
        match self.0.get_mut(&port) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(&port);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PortCounts;

    #[test]
    fn a_port_is_open_from_its_first_vip_to_its_last() {
        let mut c = PortCounts::default();
        assert!(c.add(80), "first VIP on 80");
        assert!(!c.add(80), "second VIP on 80");
        assert!(c.add(443));
        assert!(!c.remove(80), "one VIP still on 80");
        assert!(c.remove(80), "the last one left");
        assert!(!c.remove(80), "nothing left to remove");
        assert!(c.add(80), "open again");
        assert!(c.remove(443));
    }
}
