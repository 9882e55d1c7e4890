//! The bpf(2) calls the socket plane needs and aya 0.14 does not wrap: what a pinned
//! object is (`BPF_OBJ_GET`, `BPF_OBJ_GET_INFO_BY_FD`), and putting a new program on a
//! cgroup link in place (`BPF_LINK_UPDATE`), so an upgraded vipd replaces its programs
//! without a moment in which sockets are not balanced.

use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// `BPF_LINK_TYPE_CGROUP` (linux/bpf.h).
pub const LINK_TYPE_CGROUP: u32 = 3;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is the `union bpf_attr` member this command reads, zero-padded,
    // and lives across the call; the kernel writes only within its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us alone.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Opens a pinned object (map, program or link).
pub fn obj_get(path: &Path) -> std::io::Result<OwnedFd> {
    #[repr(C, align(8))]
    #[derive(Default)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path with a NUL byte"))?;
    let mut attr = Attr {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_OBJ_GET, &mut attr).map(owned)
}

fn info<I: Default>(fd: BorrowedFd<'_>) -> std::io::Result<I> {
    #[repr(C, align(8))]
    #[derive(Default)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut out = I::default();
    let mut attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<I>() as u32,
        info: &mut out as *mut I as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(out)
}

/// What a link is: `struct bpf_link_info` with its cgroup member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    pub attach_type: u32,
    pub _rest: [u32; 9],
}

pub fn link_info(fd: BorrowedFd<'_>) -> std::io::Result<LinkInfo> {
    info(fd)
}

/// The start of `struct bpf_prog_info` and `struct bpf_map_info`, up to their names.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(8))]
struct ProgInfo {
    _head: [u64; 8],
    name: [u8; 16],
    _rest: [u64; 16],
}

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(8))]
struct MapInfo {
    _head: [u32; 6],
    name: [u8; 16],
    _rest: [u64; 8],
}

fn name_of(bytes: &[u8; 16]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(16);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The name of the program with id `id` (as the kernel keeps it: 15 bytes at most).
pub fn prog_name(id: u32) -> std::io::Result<String> {
    #[repr(C, align(8))]
    #[derive(Default)]
    struct Attr {
        id: u32,
        next_id: u32,
        open_flags: u32,
        _pad: u32,
    }
    let mut attr = Attr {
        id,
        ..Default::default()
    };
    let fd = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?);
    let i: ProgInfo = info(std::os::fd::AsFd::as_fd(&fd))?;
    Ok(name_of(&i.name))
}

/// The name of the map behind `fd` (15 bytes at most).
pub fn map_name(fd: BorrowedFd<'_>) -> std::io::Result<String> {
    let i: MapInfo = info(fd)?;
    Ok(name_of(&i.name))
}

/// What a map is, as far as its layout goes: the head of `struct bpf_map_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapLayout {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// The layout of the map behind `fd`.
pub fn map_layout(fd: BorrowedFd<'_>) -> std::io::Result<MapLayout> {
    let i: MapInfo = info(fd)?;
    let [map_type, _id, key_size, value_size, max_entries, map_flags] = i._head;
    Ok(MapLayout {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
    })
}

/// Puts `prog` on the link `link` in place of its program.
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> std::io::Result<()> {
    #[repr(C, align(8))]
    #[derive(Default)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let mut attr = Attr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// The id of the cgroup v2 directory `dir` (its inode number, which is what the kernel
/// reports as a cgroup link's `cgroup_id`).
pub fn cgroup_id(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(dir)?.ino())
}
