//! What the IPVS data plane needs from this host's kernel, for `vipd check`: read only,
//! nothing is loaded. IPVS itself (loaded, built in, or a module vipd's start loads)
//! and each configured scheduler's module are requirements; kprobes, which passive
//! detection needs to name each connection's backend (`ip_vs_conn_new`), are a note.

use std::{collections::BTreeSet, path::Path};

use crate::{
    config::Config,
    plane::features::{kernel_release, Features, Modules},
};

/// What this host offers IPVS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsHost {
    pub release: String,
    /// `/proc/net/ip_vs` exists: IPVS is loaded (or built in).
    pub loaded: bool,
    /// The kernel's module lists, if it has them.
    pub modules: Option<Modules>,
    /// The kprobe event source (`/sys/bus/event_source/devices/kprobe`) exists.
    pub kprobes: bool,
}

impl IpvsHost {
    /// This host's.
    pub fn read() -> IpvsHost {
        IpvsHost {
            release: kernel_release().unwrap_or_else(|| "?".to_owned()),
            loaded: Path::new("/proc/net/ip_vs").exists(),
            modules: Modules::running(),
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
        }
    }
}

/// Checks this host for `config`'s IPVS services.
pub fn check(config: &Config) -> Features {
    let schedulers: BTreeSet<&str> = config
        .services
        .iter()
        .map(|s| s.scheduler.as_str())
        .collect();
    judge(&IpvsHost::read(), &schedulers)
}

/// The verdict on `host` for services using `schedulers`.
pub fn judge(host: &IpvsHost, schedulers: &BTreeSet<&str>) -> Features {
    let mut out = Features::default();
    let r = &host.release;
    match &host.modules {
        Some(m) if !host.loaded && !m.has("ip_vs") => out.errors.push(format!(
            "kernel {r} has no IPVS (ip_vs is neither loaded nor among its modules); the socket data plane (dataplane = \"socket\") needs none"
        )),
        None if !host.loaded => out.notes.push(format!(
            "whether kernel {r} has IPVS is unknown (ip_vs is not loaded and /lib/modules/{r} has no module lists)"
        )),
        _ => {}
    }
    if let Some(m) = &host.modules {
        for s in schedulers {
            let module = format!("ip_vs_{s}");
            if !m.has(&module) {
                out.errors.push(format!(
                    "scheduler \"{s}\": kernel {r} has no {module} module; choose another scheduler"
                ));
            }
        }
    }
    if !host.kprobes {
        out.notes.push(format!(
            "kernel {r} has no kprobes: passive detection cannot name each connection's backend (ip_vs_conn_new), so vipd run starts it degraded; active checks still run"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(loaded: bool, modules: Option<&str>, kprobes: bool) -> IpvsHost {
        IpvsHost {
            release: "6.1.0-test".into(),
            loaded,
            modules: modules.map(Modules::parse),
            kprobes,
        }
    }

    const DEBIAN: &str = "kernel/net/netfilter/ipvs/ip_vs.ko.xz:\n\
                          kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz:\n\
                          kernel/net/netfilter/ipvs/ip_vs_wlc.ko.xz:\n";

    fn rr() -> BTreeSet<&'static str> {
        BTreeSet::from(["rr"])
    }

    #[test]
    fn a_kernel_with_ipvs_and_kprobes_passes() {
        assert_eq!(
            judge(&host(false, Some(DEBIAN), true), &rr()),
            Features::default()
        );
        assert_eq!(judge(&host(true, None, true), &rr()), Features::default());
    }

    #[test]
    fn a_kernel_without_ipvs_is_an_error_that_names_the_socket_plane() {
        let f = judge(
            &host(false, Some("kernel/drivers/net/veth.ko:\n"), false),
            &rr(),
        );
        assert_eq!(f.errors.len(), 2, "{f:?}");
        assert!(
            f.errors[0].starts_with("kernel 6.1.0-test has no IPVS"),
            "{f:?}"
        );
        assert!(f.errors[0].contains("dataplane = \"socket\""), "{f:?}");
        assert!(f.errors[1].contains("no ip_vs_rr module"), "{f:?}");
        assert!(f.notes[0].contains("no kprobes"), "{f:?}");
    }

    #[test]
    fn a_scheduler_the_kernel_lacks_is_an_error_naming_it() {
        let f = judge(
            &host(true, Some(DEBIAN), true),
            &BTreeSet::from(["twos", "wlc"]),
        );
        assert_eq!(
            f.errors,
            ["scheduler \"twos\": kernel 6.1.0-test has no ip_vs_twos module; choose another scheduler"]
        );
    }

    #[test]
    fn without_module_lists_only_a_loaded_ipvs_says_anything() {
        let f = judge(&host(false, None, true), &rr());
        assert!(f.errors.is_empty(), "{f:?}");
        assert!(f.notes[0].contains("is unknown"), "{f:?}");
    }
}
