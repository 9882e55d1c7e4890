//! How a plane's stream of connection records fared, for status and metrics.

/// Counts a plane keeps of its records: reports made, records it could not attribute,
/// and records lost on the way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Reports made for the health machines.
    pub reports: u64,
    /// Records that named no known connection or service.
    pub unattributed: u64,
    /// Open connections dropped from the table because it was full.
    pub evicted: u64,
    /// Kernel records that could not be decoded (counted by the reader).
    pub decode_failures: u64,
    /// Records that could fail no backend, not queued by the kernel programs while the
    /// ring was nearly full, to keep room for those that can (counted by the programs).
    pub shed: u64,
    /// Connected UDP sockets the socket plane destroyed because their backend was taken
    /// out of its service.
    pub udp_sockets_destroyed: u64,
}
