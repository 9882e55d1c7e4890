//! What every data plane's host check (`vipd check`) shares: the verdict (errors: the
//! plane cannot start; notes: it works otherwise than it could), the running kernel's
//! release, and which kernel modules it has. Read only: nothing is loaded.

use std::path::Path;

use crate::config::{Config, Dataplane};

/// What the host lacks for a data plane.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Features {
    /// Requirements missing: the plane cannot start.
    pub errors: Vec<String>,
    /// What works otherwise than it could.
    pub notes: Vec<String>,
}

/// What `config`'s data plane needs of this host's kernel and lacks (read only): what
/// `vipd check` reports, and what `vipd run` says first when the plane cannot start.
pub fn of_config(config: &Config) -> Features {
    match &config.dataplane {
        Dataplane::Ipvs => super::ipvs::features::check(config),
        Dataplane::Xdp(x) => crate::xdp::features::check(x),
        Dataplane::Socket(s) => crate::sockplane::features::check(s),
    }
}

/// `major.minor` of a kernel release string (`6.18.2-foo`).
pub fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's release (`uname -r`), if it can be read.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Checks the running kernel against `min` (for `plane`, which needs it for `why`): an
/// error if older, a note if its release cannot be read.
pub fn require_kernel(min: (u32, u32), plane: &str, why: &str, out: &mut Features) {
    let want = format!("Linux {}.{} or later", min.0, min.1);
    match kernel_release() {
        Some(r) => match release_version(&r) {
            Some(v) if v < min => out.errors.push(format!(
                "kernel {r}: the {plane} data plane needs {want} ({why})"
            )),
            Some(_) => {}
            None => out
                .notes
                .push(format!("kernel release {r:?} not understood; needs {want}")),
        },
        None => out.notes.push(format!(
            "kernel release unknown (/proc/sys/kernel/osrelease); needs {want}"
        )),
    }
}

/// The modules a kernel release has, built in or loadable: the names listed in its
/// `modules.builtin` and `modules.dep` (`ip_vs`, `ip_vs_rr`, ...).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Modules {
    names: std::collections::BTreeSet<String>,
}

impl Modules {
    /// The running kernel's, from `/lib/modules/<release>`; `None` if neither list is
    /// there (a kernel installed without its module lists: nothing can be said).
    pub fn running() -> Option<Modules> {
        let dir = Path::new("/lib/modules").join(kernel_release()?);
        let lists: Vec<String> = ["modules.builtin", "modules.dep"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .collect();
        (!lists.is_empty()).then(|| Modules::parse(&lists.concat()))
    }

    /// The module names in module list text (`modules.dep` lines `path: deps`,
    /// `modules.builtin` lines `path`; paths end in `.ko`, perhaps compressed).
    pub fn parse(text: &str) -> Modules {
        let names = text
            .lines()
            .filter_map(|l| l.split(':').next())
            .filter_map(|path| path.rsplit('/').next())
            .filter_map(|file| {
                file.split_once(".ko")
                    .map(|(name, _)| name.replace('-', "_"))
            })
            .collect();
        Modules { names }
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&name.replace('-', "_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_as_major_minor() {
        assert_eq!(release_version("6.18.2-cloud"), Some((6, 18)));
        assert_eq!(release_version("5.4.0"), Some((5, 4)));
        assert_eq!(release_version("6.1-rc1"), Some((6, 1)));
        assert_eq!(release_version("x"), None);
    }

    #[test]
    fn module_lists_name_their_modules_however_compressed() {
        let m = Modules::parse(
            "kernel/net/netfilter/ipvs/ip_vs.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz\n\
             kernel/net/netfilter/ipvs/ip_vs_rr.ko.zst: kernel/net/netfilter/ipvs/ip_vs.ko.zst\n\
             kernel/net/ipv4/tcp_bbr.ko\n\
             kernel/drivers/net/veth.ko:\n",
        );
        for name in ["ip_vs", "ip_vs_rr", "tcp_bbr", "veth"] {
            assert!(m.has(name), "{name}: {m:?}");
        }
        assert!(!m.has("ip_vs_twos"));
        assert!(!m.has("ip"));
    }
}
