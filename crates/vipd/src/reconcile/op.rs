//! One IPVS write of a plan, how it is shown, and how it goes into a netlink batch.

use std::{fmt, net::IpAddr};

use vipd_ipvs::{Batch, Destination, ForwardMethod, Service, ServiceKey, TunnelKind};

use super::desired::DestId;

/// One netlink write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    NewService(Service),
    SetService(Service),
    DelService(ServiceKey),
    NewDest(ServiceKey, Destination),
    SetDest(ServiceKey, Destination),
    DelDest(ServiceKey, DestId),
}

impl Op {
    /// The service the write is about.
    pub fn service(&self) -> &ServiceKey {
        match self {
            Op::NewService(s) | Op::SetService(s) => &s.key,
            Op::DelService(k) | Op::NewDest(k, _) | Op::SetDest(k, _) | Op::DelDest(k, _) => k,
        }
    }

    /// Appends the request to `batch`; fails (before anything is sent) when the kernel's
    /// ABI cannot carry a value.
    pub fn encode(&self, batch: &mut Batch) -> Result<usize, vipd_ipvs::Error> {
        match self {
            Op::NewService(s) => batch.new_service(s),
            Op::SetService(s) => batch.set_service(s),
            Op::DelService(k) => batch.del_service(k),
            Op::NewDest(k, d) => batch.new_destination(k, d),
            Op::SetDest(k, d) => batch.set_destination(k, d),
            Op::DelDest(k, id) => batch.del_destination(k, id.ip, id.port),
        }
    }
}

impl Op {
    /// What the kernel's refusal of this op with `errno` means, when the errno alone
    /// does not say it: IPVS answers `ENOENT` to a service whose scheduler it cannot
    /// find (no `ip_vs_<name>` module built for the running kernel, or none loadable),
    /// and `ESRCH` to a backend of a service that does not exist (typically because
    /// the kernel refused the service itself just before).
    pub fn refusal_hint(&self, errno: i32) -> Option<String> {
        match self {
            Op::NewService(s) | Op::SetService(s) if errno == libc::ENOENT => Some(format!(
                "the running kernel has no IPVS scheduler \"{0}\" (module ip_vs_{0} is not \
                 built for it or cannot be loaded); choose another scheduler",
                s.scheduler
            )),
            Op::NewDest(k, _) | Op::SetDest(k, _) if errno == libc::ESRCH => {
                Some(format!("the kernel has no service {k}"))
            }
            _ => None,
        }
    }
}

/// `198.18.1.2:80`, `[fd00:18::2]:80`.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `masq`, `route`, `tunnel gue:6080 csum`.
pub fn forward_text(f: &ForwardMethod) -> String {
    match f {
        ForwardMethod::Masquerade => "masq".into(),
        ForwardMethod::DirectRoute => "route".into(),
        ForwardMethod::Local => "local".into(),
        ForwardMethod::Bypass => "bypass".into(),
        ForwardMethod::Tunnel { kind, port, flags } => {
            let kind = match kind {
                TunnelKind::Ipip => "ipip".to_owned(),
                TunnelKind::Gue => format!("gue:{port}"),
                TunnelKind::Gre => "gre".to_owned(),
            };
            let csum = match flags.bits() {
                0 => "",
                1 => " csum",
                2 => " remcsum",
                _ => " csum-flags",
            };
            format!("tunnel {kind}{csum}")
        }
    }
}

fn service_text(s: &Service) -> String {
    let mut text = format!("{} scheduler {}", s.key, s.scheduler);
    let flags = s.flags.bits() & !vipd_ipvs::ServiceFlags::HASHED.bits();
    if flags != 0 {
        text.push_str(&format!(" flags {flags:#x}"));
    }
    if s.flags.contains(vipd_ipvs::ServiceFlags::PERSISTENT) {
        text.push_str(&format!(" persistent {}s mask {:?}", s.timeout, s.netmask));
    }
    text
}

fn dest_text(d: &Destination) -> String {
    format!(
        "{} {} weight {} thresholds {}/{}",
        endpoint(d.addr, d.port),
        forward_text(&d.forward),
        d.weight,
        d.upper_threshold,
        d.lower_threshold
    )
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::NewService(s) => write!(f, "new service {}", service_text(s)),
            Op::SetService(s) => write!(f, "set service {}", service_text(s)),
            Op::DelService(k) => write!(f, "delete service {k}"),
            Op::NewDest(k, d) => write!(f, "new backend {} of {k}", dest_text(d)),
            Op::SetDest(k, d) => write!(f, "set backend {} of {k}", dest_text(d)),
            Op::DelDest(k, id) => write!(f, "delete backend {id} of {k}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use vipd_ipvs::{Destination, ForwardMethod, Service, ServiceKey};

    use super::Op;

    #[test]
    fn a_missing_scheduler_is_named_with_its_module() {
        let key = ServiceKey::tcp("198.18.0.1".parse().unwrap(), 80);
        let new = Op::NewService(Service::new(key, "twos"));
        let hint = new.refusal_hint(libc::ENOENT).unwrap();
        assert!(
            hint.contains("no IPVS scheduler \"twos\"") && hint.contains("ip_vs_twos"),
            "{hint}"
        );
        let set = Op::SetService(Service::new(key, "twos"));
        assert_eq!(set.refusal_hint(libc::ENOENT), Some(hint));
        let dest = Destination::new(
            "198.18.1.2".parse().unwrap(),
            8080,
            ForwardMethod::Masquerade,
        );
        assert_eq!(
            Op::NewDest(key, dest).refusal_hint(libc::ESRCH).as_deref(),
            Some("the kernel has no service tcp 198.18.0.1:80")
        );
        // Other refusals speak for themselves.
        assert_eq!(new.refusal_hint(libc::EEXIST), None);
        assert_eq!(Op::DelService(key).refusal_hint(libc::ENOENT), None);
    }
}
