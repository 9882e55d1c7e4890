//! What the XDP data plane needs from this host's kernel, for `vipd check`: read only,
//! nothing is loaded. The kernel (ring buffer: 5.8; a pinned XDP link, with `pin_maps`:
//! 5.9) and the configured interface are requirements; an unmounted bpffs is a note.

use std::path::Path;

use crate::{
    config::XdpSettings,
    fs_type,
    plane::features::{require_kernel, Features},
};

/// The oldest kernel with the ring buffer the program reports health through.
pub const MIN_KERNEL: (u32, u32) = (5, 8);
/// With `pin_maps`, the program is attached through a pinned XDP link.
pub const MIN_KERNEL_PINNED: (u32, u32) = (5, 9);

/// Checks this host for `s`.
pub fn check(s: &XdpSettings) -> Features {
    let mut out = Features::default();
    if s.pin_maps {
        require_kernel(
            MIN_KERNEL_PINNED,
            "XDP",
            "XDP links, for pin_maps",
            &mut out,
        );
    } else {
        require_kernel(MIN_KERNEL, "XDP", "BPF ring buffer", &mut out);
    }
    interface(&s.interface, Path::new("/sys/class/net"), &mut out);
    if !fs_type::magic(Path::new("/sys/fs/bpf")).is_ok_and(|m| m == fs_type::BPF_FS_MAGIC) {
        out.notes
            .push("bpffs is not mounted on /sys/fs/bpf; vipd run mounts it".into());
    }
    out
}

/// An error unless `name` is an interface under `class` (`/sys/class/net`).
fn interface(name: &str, class: &Path, out: &mut Features) {
    if !class.join(name).exists() {
        out.errors.push(format!(
            "[xdp] interface {name}: no such interface on this host (in vipd's network namespace)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_an_error_naming_it() {
        let mut out = Features::default();
        interface("lo", Path::new("/sys/class/net"), &mut out);
        assert_eq!(out, Features::default());
        interface("nope0", Path::new("/sys/class/net"), &mut out);
        assert_eq!(
            out.errors,
            ["[xdp] interface nope0: no such interface on this host (in vipd's network namespace)"]
        );
    }
}
