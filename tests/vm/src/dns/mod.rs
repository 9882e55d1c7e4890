//! DNS over the lab, for UDP services: a dnsmasq per backend that says which backend it
//! is ([`server`]: `Lab::serve_dns`, `kill_dns`, `restart_dns`), the wire format
//! ([`wire`]), a client load with per-query outcomes ([`load`]: [`UdpLoad`]), a
//! closed-loop throughput meter for benchmarks ([`bench`]) and `dig` ([`dig`]).

pub mod bench;
pub mod dig;
pub mod load;
pub mod server;
pub mod wire;

pub use dig::dig_txt;
pub use load::{UdpLoad, UdpOutcome, UdpQuery, UdpReport};
pub use server::ask_txt;
pub use wire::WHICH;
