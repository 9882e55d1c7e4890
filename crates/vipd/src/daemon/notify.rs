//! Telling the service manager how the daemon is doing (systemd's `sd_notify` protocol,
//! for `Type=notify` units): `READY=1` once the first reconcile is done, so units
//! ordered after vipd start with the VIPs in place; `STATUS=` with the plane's mode and
//! the service count; `RELOADING=1` around a reload and `STOPPING=1` on the way out.
//!
//! The protocol is one datagram per message to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). Without
//! the variable (not started by systemd) every call does nothing.

use std::{
    io,
    os::{linux::net::SocketAddrExt, unix::net::UnixDatagram},
    path::PathBuf,
};

/// Where notifications go; `None`: nowhere.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`, which is then removed from the environment so that
    /// nothing vipd starts could send on its behalf.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        // SAFETY: called at start-up, before the runtime starts any other thread.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        Notifier::to(&value.to_string_lossy())
    }

    /// To the socket `name` (`@name` for an abstract one); an empty name is none.
    pub fn to(name: &str) -> Notifier {
        let target = match name.strip_prefix('@') {
            _ if name.is_empty() => None,
            Some(rest) => Some(Target::Abstract(rest.as_bytes().to_vec())),
            None => Some(Target::Path(PathBuf::from(name))),
        };
        Notifier { target }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` lines). Errors are the caller's to
    /// log: a service manager that went away must not stop the daemon.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        match target {
            Target::Path(p) => socket.send_to(state.as_bytes(), p)?,
            Target::Abstract(name) => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)?
            }
        };
        Ok(())
    }

    /// Start-up is done.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={status}"))
    }

    /// A reload begins; `monotonic_us` is CLOCK_MONOTONIC in microseconds, which
    /// systemd wants with it.
    pub fn reloading(&self, monotonic_us: u64) -> io::Result<()> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={monotonic_us}"))
    }

    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={status}"))
    }

    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("vipd-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap());
        assert!(n.enabled());
        n.ready("ipvs: 2 services, watcher full").unwrap();
        assert_eq!(
            received(&manager),
            "READY=1\nSTATUS=ipvs: 2 services, watcher full"
        );
        n.reloading(42).unwrap();
        assert_eq!(received(&manager), "RELOADING=1\nMONOTONIC_USEC=42");
        n.stopping().unwrap();
        assert_eq!(received(&manager), "STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("vipd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(&format!("@{name}")).status("x").unwrap();
        assert_eq!(received(&manager), "STATUS=x");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let n = Notifier::to("");
        assert!(!n.enabled());
        n.ready("x").unwrap();
    }

    #[test]
    fn a_manager_that_went_away_is_an_error_not_a_panic() {
        let n = Notifier::to("/nonexistent-vipd-dir/notify");
        assert!(n.ready("x").is_err());
    }
}
