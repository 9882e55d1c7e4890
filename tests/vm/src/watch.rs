//! Loaded probes with a correlator behind them: what the watcher tests read reports
//! from.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Correlator, Outcome, Probes, Report};

pub struct Watch {
    pub probes: Probes,
    pub correlator: Correlator,
    pub reports: Vec<Report>,
}

impl Watch {
    pub fn new(probes: Probes) -> Self {
        Self {
            probes,
            correlator: Correlator::new(4096),
            reports: Vec::new(),
        }
    }

    /// Drains events into reports until `done` or `timeout`; returns every report so far.
    pub fn until(&mut self, timeout: Duration, done: impl Fn(&[Report]) -> bool) -> Vec<Report> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !done(&self.reports) {
            match self.probes.next_event() {
                Some(Ok(e)) => self.reports.extend(self.correlator.feed(&e)),
                Some(Err(e)) => panic!("undecodable event: {e}"),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        self.reports.clone()
    }

    /// Connects to `dst`, reads the server's greeting to its close, and asserts the
    /// reports: Established, then Closed by the peer without RST. Returns the client
    /// address and the reports.
    pub fn accepted(&mut self, dst: SocketAddr) -> (SocketAddr, Vec<Report>) {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
        let client = s.local_addr().unwrap();
        std::io::Read::read_to_string(&mut s, &mut String::new()).unwrap();
        drop(s);
        let closed = |r: &[Report]| {
            r.iter()
                .any(|r| matches!(r.outcome, Outcome::Closed { .. }))
        };
        let reports = self.until(Duration::from_secs(5), closed);
        let outcomes: Vec<_> = reports.iter().map(|r| r.outcome).collect();
        assert!(
            matches!(
                outcomes[..],
                [
                    Outcome::Established { .. },
                    Outcome::Closed {
                        by_peer: true,
                        reset: false
                    }
                ]
            ),
            "{reports:?}"
        );
        (client, reports)
    }
}
