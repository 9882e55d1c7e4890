//! A restart finds pinned maps of an older layout (here `SOCK_SERVICES` as it was
//! before persistence: a value 16 bytes shorter): the plane re-creates the map it can
//! prove its own and balances with the new layout; a pin of another layout that is not
//! provably vipd's stops the start with an error naming it, and is left in place.

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

use vipd::{
    config::{Config, SocketSettings},
    plane::{socket::SocketPlane, DataPlane},
    sockplane::{
        compat::expected,
        link::{map_layout, obj_get},
        Sizes,
    },
};

use crate::{
    socket_common::{
        addr, backend_netns, procs::client, Cgroup, Pins, Servers, BACKENDS4, VIP4, VIP_PORT,
    },
    start, tally, weights,
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;

/// Creates a hash map named `name` with `key`/`value` sizes and pins it at `path`.
fn pin_hash_map(path: &Path, name: &str, key: u32, value: u32, entries: u32) {
    #[repr(C, align(8))]
    #[derive(Default)]
    struct Create {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; 16],
        _rest: [u32; 8],
    }
    let mut attr = Create {
        map_type: 1,
        key_size: key,
        value_size: value,
        max_entries: entries,
        map_flags: 1,
        ..Default::default()
    };
    attr.map_name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `attr` is BPF_MAP_CREATE's part of `union bpf_attr`, zero-padded.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &mut attr as *mut Create,
            std::mem::size_of::<Create>() as u32,
        )
    };
    assert!(fd >= 0, "map create: {}", std::io::Error::last_os_error());
    #[repr(C, align(8))]
    struct Pin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut pin = Pin {
        pathname: c.as_ptr() as u64,
        bpf_fd: fd as u32,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: as above, BPF_OBJ_PIN's part.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &mut pin as *mut Pin,
            std::mem::size_of::<Pin>() as u32,
        )
    };
    assert!(rc == 0, "pin: {}", std::io::Error::last_os_error());
    // SAFETY: our own descriptor; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
}

fn value_size(path: &Path) -> u32 {
    let fd = obj_get(path).unwrap();
    map_layout(std::os::fd::AsFd::as_fd(&fd))
        .unwrap()
        .value_size
}

#[test]
fn a_pinned_map_of_an_older_layout_is_recreated_if_ours_and_refused_if_not() {
    let want = expected("SOCK_SERVICES", Sizes::default()).unwrap();
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &BACKENDS4);
    let cg = Cgroup::new("sock-layout");
    let pins = Pins::new("sock-layout");
    std::fs::create_dir_all(&pins.0).unwrap();
    let pin = pins.0.join("SOCK_SERVICES");

    // Not provably vipd's (another name) and of another layout: refused, left alone.
    pin_hash_map(&pin, "OTHER", want.key_size, want.value_size - 16, 16);
    let s = SocketSettings {
        cgroup: cg.0.clone(),
    };
    let e = SocketPlane::start_with(&s, &pins.0)
        .err()
        .expect("started beside a foreign map");
    let msg = e.chain();
    assert!(
        msg.contains("SOCK_SERVICES") && msg.contains("value size 2064, expected 2080"),
        "{msg}"
    );
    assert!(pin.exists(), "the foreign pin was removed");
    std::fs::remove_file(&pin).unwrap();

    // vipd's map as an older vipd pinned it: re-created, and the plane balances.
    pin_hash_map(
        &pin,
        "SOCK_SERVICES",
        want.key_size,
        want.value_size - 16,
        want.max_entries,
    );
    let mut plane = start(&cg.0, &pins.0);
    assert_eq!(value_size(&pin), want.value_size);
    plane
        .apply(&Config::default(), &weights(VIP4, &BACKENDS4, &[1, 1, 1]))
        .unwrap();
    let vip = addr(VIP4, VIP_PORT);
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 60, "tcp"), vip);
    assert_eq!(t.len(), 3, "{t:?}");
}
