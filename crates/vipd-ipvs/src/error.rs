//! The crate's error type.

use crate::command::Operation;

/// Everything that can go wrong encoding a request, decoding a reply or talking to the kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A buffer ended before a structure it should hold.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },

    /// An attribute or structure had a length the ABI does not allow.
    #[error("invalid length for {what}: {len} bytes")]
    InvalidLength { what: &'static str, len: usize },

    /// A reply lacked an attribute the decoder needs.
    #[error("missing attribute {attr}")]
    MissingAttribute { attr: &'static str },

    /// An attribute carried a value outside the set the header defines.
    #[error("invalid value {value} for {what}")]
    InvalidValue { what: &'static str, value: u64 },

    /// A string attribute was not UTF-8.
    #[error("invalid string in {what}")]
    InvalidString { what: &'static str },

    /// A generic-netlink message carried a command the decoder does not expect there.
    #[error("unexpected IPVS command {cmd} in a reply")]
    UnexpectedCommand { cmd: u8 },

    /// A netlink message of a type the decoder does not expect there.
    #[error("unexpected netlink message type {message_type}")]
    UnexpectedMessageType { message_type: u16 },

    /// A request could not be encoded because an argument breaks the ABI's rules
    /// (name too long, fwmark 0, netmask of the wrong family, ...).
    #[error("invalid argument: {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    /// The kernel answered with `NLMSG_ERROR` (or a negative `NLMSG_DONE` code).
    /// `errno` is positive (e.g. `libc::EEXIST`).
    #[error("kernel refused {op}: {}{}", std::io::Error::from_raw_os_error(*errno), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kernel {
        errno: i32,
        op: Operation,
        /// The extended-ack message (`NLMSGERR_ATTR_MSG`), when the kernel sent one.
        message: Option<String>,
    },

    /// `nlctrl` knows no `"IPVS"` family: the `ip_vs` module is not loaded (or IPVS is not
    /// built into this kernel).
    #[error("generic netlink family \"IPVS\" not found (is the ip_vs module loaded?)")]
    FamilyNotFound,

    /// A dump reply had `NLM_F_DUMP_INTR` set: the table changed while it was dumped.
    /// Retrying the dump is the usual answer.
    #[error("{op} dump was interrupted by a concurrent change; retry")]
    DumpInterrupted { op: Operation },

    /// A batched request got no acknowledgement.
    #[error("no acknowledgement received for sequence number {seq}")]
    MissingAck { seq: u32 },

    /// A socket error.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The kernel's errno, when this is [`Error::Kernel`].
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True for the errnos IPVS uses for "no such service / destination"
    /// (`ESRCH` for services, `ENOENT` for destinations).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(libc::ESRCH) | Some(libc::ENOENT))
    }

    /// True when the kernel said the object already exists (`EEXIST`).
    pub fn is_already_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True for errors raised while decoding bytes (as opposed to socket, kernel or
    /// argument errors).
    pub fn is_decode_error(&self) -> bool {
        matches!(
            self,
            Error::Truncated { .. }
                | Error::InvalidLength { .. }
                | Error::MissingAttribute { .. }
                | Error::InvalidValue { .. }
                | Error::InvalidString { .. }
                | Error::UnexpectedCommand { .. }
                | Error::UnexpectedMessageType { .. }
        )
    }
}

/// Shorthand for `Result<T, vipd_ipvs::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    #[test]
    fn kernel_error_display() {
        let e = Error::Kernel {
            errno: libc::EEXIST,
            op: Operation::Ipvs(Command::NewService),
            message: Some("already there".into()),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("kernel refused IPVS_CMD_NEW_SERVICE: "),
            "{text}"
        );
        assert!(text.contains("os error 17"), "{text}");
        assert!(text.ends_with(": already there"), "{text}");
        assert!(e.is_already_exists() && !e.is_not_found() && !e.is_decode_error());
    }
}
