//! The IPVS generic-netlink commands (`IPVS_CMD_*`) as a typed enum.

use std::fmt;

use crate::attrs::*;

/// One IPVS generic-netlink command. Used to name the operation in errors and batch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    NewService,
    SetService,
    DelService,
    GetService,
    NewDest,
    SetDest,
    DelDest,
    GetDest,
    NewDaemon,
    DelDaemon,
    GetDaemon,
    SetConfig,
    GetConfig,
    SetInfo,
    GetInfo,
    Zero,
    Flush,
}

impl Command {
    /// The `IPVS_CMD_*` number carried in the generic-netlink header.
    pub const fn number(self) -> u8 {
        match self {
            Command::NewService => IPVS_CMD_NEW_SERVICE,
            Command::SetService => IPVS_CMD_SET_SERVICE,
            Command::DelService => IPVS_CMD_DEL_SERVICE,
            Command::GetService => IPVS_CMD_GET_SERVICE,
            Command::NewDest => IPVS_CMD_NEW_DEST,
            Command::SetDest => IPVS_CMD_SET_DEST,
            Command::DelDest => IPVS_CMD_DEL_DEST,
            Command::GetDest => IPVS_CMD_GET_DEST,
            Command::NewDaemon => IPVS_CMD_NEW_DAEMON,
            Command::DelDaemon => IPVS_CMD_DEL_DAEMON,
            Command::GetDaemon => IPVS_CMD_GET_DAEMON,
            Command::SetConfig => IPVS_CMD_SET_CONFIG,
            Command::GetConfig => IPVS_CMD_GET_CONFIG,
            Command::SetInfo => IPVS_CMD_SET_INFO,
            Command::GetInfo => IPVS_CMD_GET_INFO,
            Command::Zero => IPVS_CMD_ZERO,
            Command::Flush => IPVS_CMD_FLUSH,
        }
    }

    /// The command with the given `IPVS_CMD_*` number, if it is one.
    pub const fn from_number(n: u8) -> Option<Command> {
        Some(match n {
            IPVS_CMD_NEW_SERVICE => Command::NewService,
            IPVS_CMD_SET_SERVICE => Command::SetService,
            IPVS_CMD_DEL_SERVICE => Command::DelService,
            IPVS_CMD_GET_SERVICE => Command::GetService,
            IPVS_CMD_NEW_DEST => Command::NewDest,
            IPVS_CMD_SET_DEST => Command::SetDest,
            IPVS_CMD_DEL_DEST => Command::DelDest,
            IPVS_CMD_GET_DEST => Command::GetDest,
            IPVS_CMD_NEW_DAEMON => Command::NewDaemon,
            IPVS_CMD_DEL_DAEMON => Command::DelDaemon,
            IPVS_CMD_GET_DAEMON => Command::GetDaemon,
            IPVS_CMD_SET_CONFIG => Command::SetConfig,
            IPVS_CMD_GET_CONFIG => Command::GetConfig,
            IPVS_CMD_SET_INFO => Command::SetInfo,
            IPVS_CMD_GET_INFO => Command::GetInfo,
            IPVS_CMD_ZERO => Command::Zero,
            IPVS_CMD_FLUSH => Command::Flush,
            _ => return None,
        })
    }

    /// The header's name for the command, e.g. `IPVS_CMD_NEW_SERVICE`.
    pub const fn name(self) -> &'static str {
        match self {
            Command::NewService => "IPVS_CMD_NEW_SERVICE",
            Command::SetService => "IPVS_CMD_SET_SERVICE",
            Command::DelService => "IPVS_CMD_DEL_SERVICE",
            Command::GetService => "IPVS_CMD_GET_SERVICE",
            Command::NewDest => "IPVS_CMD_NEW_DEST",
            Command::SetDest => "IPVS_CMD_SET_DEST",
            Command::DelDest => "IPVS_CMD_DEL_DEST",
            Command::GetDest => "IPVS_CMD_GET_DEST",
            Command::NewDaemon => "IPVS_CMD_NEW_DAEMON",
            Command::DelDaemon => "IPVS_CMD_DEL_DAEMON",
            Command::GetDaemon => "IPVS_CMD_GET_DAEMON",
            Command::SetConfig => "IPVS_CMD_SET_CONFIG",
            Command::GetConfig => "IPVS_CMD_GET_CONFIG",
            Command::SetInfo => "IPVS_CMD_SET_INFO",
            Command::GetInfo => "IPVS_CMD_GET_INFO",
            Command::Zero => "IPVS_CMD_ZERO",
            Command::Flush => "IPVS_CMD_FLUSH",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The operation a request or a kernel error belongs to: an IPVS command, or the `nlctrl`
/// family lookup done by [`crate::Client::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `CTRL_CMD_GETFAMILY` for the `"IPVS"` family.
    ResolveFamily,
    /// An IPVS command.
    Ipvs(Command),
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::ResolveFamily => f.write_str("CTRL_CMD_GETFAMILY(IPVS)"),
            Operation::Ipvs(c) => c.fmt(f),
        }
    }
}

impl From<Command> for Operation {
    fn from(c: Command) -> Self {
        Operation::Ipvs(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..=u8::MAX {
            if let Some(c) = Command::from_number(n) {
                assert_eq!(c.number(), n);
            }
        }
        assert_eq!(Command::from_number(0), None);
        assert_eq!(Command::from_number(18), None);
        assert_eq!(Command::Flush.number(), 17);
    }
}
