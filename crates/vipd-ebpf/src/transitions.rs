//! Which TCP state changes userspace is sent: those its correlator acts on, decided
//! from the two states alone, before anything else is read.
//!
//! A connection needs three: CLOSE -> SYN_SENT (it starts), SYN_SENT -> anything (its
//! handshake ends: established, or closed by a refusal or a timeout) and anything ->
//! CLOSE (it ends; the old state tells who closed first: CLOSE_WAIT or LAST_ACK means
//! the peer did). The steps in between (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
//! CLOSING) are skipped, and with them a connection's other state changes cost no more
//! than this test.

/// TCP states (include/net/tcp_states.h).
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_CLOSE: u8 = 7;

#[inline(always)]
pub fn reported(old: u8, new: u8) -> bool {
    new == TCP_SYN_SENT || old == TCP_SYN_SENT || new == TCP_CLOSE
}
