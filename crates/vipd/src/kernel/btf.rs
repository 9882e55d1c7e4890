//! Just enough of the BPF Type Format to find struct member offsets and sizes, in the
//! kernel's BTF (`/sys/kernel/btf/vmlinux`) and in a module's split BTF on top of it
//! (`/sys/kernel/btf/<module>`). Rust eBPF objects get no CO-RE relocations, so vipd
//! reads offsets here at start-up and passes them to its programs.

use std::path::Path;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// How deep anonymous structs and unions may nest, and how long a chain of typedefs and
/// modifiers may be: far beyond any kernel's, and a bound on a looping blob.
const MAX_DEPTH: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF {what}: {problem}")]
    Malformed { what: String, problem: String },
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("BTF struct {strukt} member {member} is a bitfield")]
    Bitfield { strukt: String, member: String },
    #[error("BTF type id {0} does not exist or cannot be sized")]
    BadType(u32),
}

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// In bits; with the kind flag set, the low 24 bits (bitfield size above).
    offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    /// `size` for INT/STRUCT/UNION/ENUM*, `type` for PTR/TYPEDEF/modifiers.
    size_or_type: u32,
    members: Vec<Member>,
    /// For ARRAY: (element type, number of elements).
    array: Option<(u32, u32)>,
}

/// One BTF blob: types (ids from `first_id`) and strings (offsets from `str_base`).
#[derive(Debug)]
struct Blob {
    types: Vec<Type>,
    strings: Vec<u8>,
}

/// A member's location inside its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    pub offset: u32,
    pub size: u32,
}

/// The kernel's BTF, optionally with one module's split BTF on top.
#[derive(Debug)]
pub struct Btf {
    base: Blob,
    split: Option<Blob>,
}

fn u32_at(data: &[u8], at: usize, what: &str) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| BtfError::Malformed {
            what: what.into(),
            problem: format!("truncated at byte {at}"),
        })
}

impl Blob {
    fn parse(what: &str, data: &[u8]) -> Result<Self, BtfError> {
        let bad = |problem: String| BtfError::Malformed {
            what: what.into(),
            problem,
        };
        if data.len() < HEADER_LEN || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(bad(
                "not little-endian BTF (bad magic or short header)".into()
            ));
        }
        let hdr_len = u32_at(data, 4, what)? as usize;
        let type_off = u32_at(data, 8, what)? as usize;
        let type_len = u32_at(data, 12, what)? as usize;
        let str_off = u32_at(data, 16, what)? as usize;
        let str_len = u32_at(data, 20, what)? as usize;
        let types_at = hdr_len + type_off;
        let strs_at = hdr_len + str_off;
        let types = data
            .get(types_at..types_at.saturating_add(type_len))
            .ok_or_else(|| bad("type section out of bounds".into()))?;
        let strings = data
            .get(strs_at..strs_at.saturating_add(str_len))
            .ok_or_else(|| bad("string section out of bounds".into()))?
            .to_vec();

        let mut out = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let name_off = u32_at(types, at, what)?;
            let info = u32_at(types, at + 4, what)?;
            let size_or_type = u32_at(types, at + 8, what)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut ty = Type {
                name_off,
                kind,
                kind_flag,
                size_or_type,
                members: vec![],
                array: None,
            };
            let extra = match kind {
                KIND_INT | 14 | 17 => 4,
                KIND_ARRAY => {
                    ty.array = Some((u32_at(types, at, what)?, u32_at(types, at + 8, what)?));
                    12
                }
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        ty.members.push(Member {
                            name_off: u32_at(types, m, what)?,
                            type_id: u32_at(types, m + 4, what)?,
                            offset: u32_at(types, m + 8, what)?,
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | 13 => vlen * 8,
                15 | KIND_ENUM64 => vlen * 12,
                KIND_PTR | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | 12
                | 16 | KIND_TYPE_TAG => 0,
                k => {
                    return Err(bad(format!(
                        "unknown type kind {k} at type {}",
                        out.len() + 1
                    )))
                }
            };
            at += extra;
            if at > types.len() {
                return Err(bad("type section ends inside a type".into()));
            }
            out.push(ty);
        }
        Ok(Self {
            types: out,
            strings,
        })
    }
}

impl Btf {
    /// Parses the kernel's BTF and, if given, one module's split BTF.
    pub fn parse(base: &[u8], split: Option<&[u8]>) -> Result<Self, BtfError> {
        Ok(Self {
            base: Blob::parse("vmlinux", base)?,
            split: split.map(|s| Blob::parse("module", s)).transpose()?,
        })
    }

    /// Reads `/sys/kernel/btf/vmlinux`, plus `/sys/kernel/btf/<module>` when `module` is
    /// given and that module is loaded (a built-in module has its types in vmlinux).
    pub fn from_sys_fs(module: Option<&str>) -> Result<Self, BtfError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| BtfError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let base = read(Path::new("/sys/kernel/btf/vmlinux"))?;
        let split = match module {
            Some(m) => {
                let p = Path::new("/sys/kernel/btf").join(m);
                if p.exists() {
                    Some(read(&p)?)
                } else {
                    None
                }
            }
            None => None,
        };
        Self::parse(&base, split.as_deref())
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        let id = id as usize;
        let n = self.base.types.len();
        if id == 0 {
            None
        } else if id <= n {
            self.base.types.get(id - 1)
        } else {
            self.split.as_ref()?.types.get(id - n - 1)
        }
    }

    fn name(&self, off: u32) -> &str {
        let off = off as usize;
        let n = self.base.strings.len();
        let (bytes, at) = match &self.split {
            Some(s) if off >= n => (&s.strings, off - n),
            _ => (&self.base.strings, off),
        };
        let rest = bytes.get(at..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// The size of a type in bytes, following typedefs, modifiers and array elements
    /// (arrays multiply, saturating) at most [`MAX_DEPTH`] steps.
    fn size_of(&self, mut id: u32) -> Result<u32, BtfError> {
        let mut elements = 1u32;
        for _ in 0..MAX_DEPTH {
            let ty = self.ty(id).ok_or(BtfError::BadType(id))?;
            match ty.kind {
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => {
                    return Ok(ty.size_or_type.saturating_mul(elements));
                }
                KIND_PTR => return Ok(8u32.saturating_mul(elements)),
                KIND_ARRAY => {
                    let (elem, n) = ty.array.ok_or(BtfError::BadType(id))?;
                    elements = elements.saturating_mul(n);
                    id = elem;
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Err(BtfError::BadType(id)),
            }
        }
        Err(BtfError::BadType(id))
    }

    /// Finds `member` of `struct strukt`, descending into anonymous structs and unions.
    /// Module types are searched before the kernel's.
    pub fn member(&self, strukt: &str, member: &str) -> Result<MemberInfo, BtfError> {
        let n = self.base.types.len() as u32;
        let split_ids = self.split.as_ref().map_or(0, |s| s.types.len() as u32);
        let id = (n + 1..=n + split_ids)
            .chain(1..=n)
            .find(|&id| {
                self.ty(id).is_some_and(|t| {
                    t.kind == KIND_STRUCT
                        && !t.members.is_empty()
                        && self.name(t.name_off) == strukt
                })
            })
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        self.find_member(id, member, 0, strukt, 0)?
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })
    }

    fn find_member(
        &self,
        id: u32,
        member: &str,
        base_bits: u32,
        strukt: &str,
        depth: u32,
    ) -> Result<Option<MemberInfo>, BtfError> {
        let malformed = |problem: &str| BtfError::Malformed {
            what: format!("struct {strukt}"),
            problem: problem.into(),
        };
        if depth > MAX_DEPTH {
            return Err(malformed("anonymous members nest too deep (a loop?)"));
        }
        let ty = self.ty(id).ok_or(BtfError::BadType(id))?;
        for m in &ty.members {
            let (bits, bitfield) = if ty.kind_flag {
                (m.offset & 0xff_ffff, m.offset >> 24 != 0)
            } else {
                (m.offset, false)
            };
            let bits = base_bits
                .checked_add(bits)
                .ok_or_else(|| malformed("a member offset overflows"))?;
            let name = self.name(m.name_off);
            if name == member {
                if bitfield || bits % 8 != 0 {
                    return Err(BtfError::Bitfield {
                        strukt: strukt.into(),
                        member: member.into(),
                    });
                }
                let size = self.size_of(m.type_id)?;
                return Ok(Some(MemberInfo {
                    offset: bits / 8,
                    size,
                }));
            }
            if name.is_empty() {
                let inner = self.resolve(m.type_id);
                if let Some(inner) = inner {
                    if let Some(found) = self.find_member(inner, member, bits, strukt, depth + 1)? {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Follows typedefs and modifiers to a struct or union id.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..MAX_DEPTH {
            let ty = self.ty(id)?;
            match ty.kind {
                KIND_STRUCT | KIND_UNION => return Some(id),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from (name_off, info, size_or_type, extra words) and strings.
    fn blob(types: &[(u32, u32, u32, &[u32])], strings: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for (name, info, size, extra) in types {
            for w in [*name, *info, *size].iter().chain(extra.iter()) {
                t.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [
            HEADER_LEN as u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(strings);
        b
    }

    const fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    #[test]
    fn finds_members_in_split_btf_through_anonymous_unions() {
        // base: 1 = u16 (int, 2 bytes), 2 = pointer to 1. strings: "\0u16\0"
        let base = blob(
            &[
                (1, info(KIND_INT, 0), 2, &[16]),
                (0, info(KIND_PTR, 0), 1, &[]),
            ],
            b"\0u16\0",
        );
        // split (ids from 3, strings from 5): 3 = anon union { u16 port; }, 4 = struct param
        // { void *ptr; union { u16 port; }; u16 af; }
        let strings = b"port\0param\0ptr\0af\0"; // offsets 5, 10, 16, 20 after the base's 5
        let split = blob(
            &[
                (0, info(KIND_UNION, 1), 2, &[5, 1, 0]),
                (
                    10,
                    info(KIND_STRUCT, 3),
                    16,
                    &[16, 2, 0, 0, 3, 64, 20, 1, 96],
                ),
            ],
            strings,
        );
        let btf = Btf::parse(&base, Some(&split)).unwrap();
        assert_eq!(
            btf.member("param", "ptr").unwrap(),
            MemberInfo { offset: 0, size: 8 }
        );
        assert_eq!(
            btf.member("param", "port").unwrap(),
            MemberInfo { offset: 8, size: 2 }
        );
        assert_eq!(
            btf.member("param", "af").unwrap(),
            MemberInfo {
                offset: 12,
                size: 2
            }
        );
        assert!(matches!(
            btf.member("param", "nope"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member("other", "af"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [&b""[..], b"\x9f\xeb", &[0xff; 64]] {
            assert!(Btf::parse(bad, None).is_err());
        }
        let mut truncated = blob(&[(0, info(KIND_STRUCT, 5), 4, &[1, 2])], b"\0");
        truncated.truncate(truncated.len() - 1);
        assert!(Btf::parse(&truncated, None).is_err());
    }

    /// Found by fuzzing: an anonymous member of its own struct's type, or an array of
    /// itself, recursed until the stack overflowed, and offsets near 2^32 bits
    /// overflowed their sum.
    #[test]
    fn looping_and_overflowing_structs_are_errors() {
        // 1 = struct s { struct s; } (anonymous, of its own type). strings: "\0s\0x\0"
        let looping = blob(&[(1, info(KIND_STRUCT, 1), 4, &[0, 1, 0])], b"\0s\0x\0");
        let btf = Btf::parse(&looping, None).unwrap();
        let e = btf.member("s", "x").unwrap_err().to_string();
        assert!(e.contains("nest too deep"), "{e}");
        // 1 = an array of itself, 2 = struct s { 1 x; }
        let array = blob(
            &[
                (0, info(KIND_ARRAY, 0), 0, &[1, 1, 2]),
                (1, info(KIND_STRUCT, 1), 4, &[3, 1, 0]),
            ],
            b"\0s\0x\0",
        );
        let btf = Btf::parse(&array, None).unwrap();
        assert!(matches!(btf.member("s", "x"), Err(BtfError::BadType(1))));
        // 1 = int, 2 = union { int x; } at bit 2^32 - 8 inside 3 = struct s { union; }
        let far = blob(
            &[
                (0, info(KIND_INT, 0), 4, &[32]),
                (0, info(KIND_UNION, 1), 4, &[3, 1, 16]),
                (1, info(KIND_STRUCT, 1), 4, &[0, 2, u32::MAX - 7]),
            ],
            b"\0s\0x\0",
        );
        let btf = Btf::parse(&far, None).unwrap();
        let e = btf.member("s", "x").unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
    }

    #[test]
    fn host_kernel_sock_common_layout() {
        // struct sock_common starts with the address pair, then the hash, then the ports:
        // stable across every kernel vipd supports.
        let btf = Btf::from_sys_fs(None).expect("/sys/kernel/btf/vmlinux");
        assert_eq!(
            btf.member("sock_common", "skc_daddr").unwrap(),
            MemberInfo { offset: 0, size: 4 }
        );
        assert_eq!(
            btf.member("sock_common", "skc_rcv_saddr").unwrap(),
            MemberInfo { offset: 4, size: 4 }
        );
        assert_eq!(
            btf.member("sock_common", "skc_dport").unwrap(),
            MemberInfo {
                offset: 12,
                size: 2
            }
        );
    }
}
