//! A small kernel BTF and an `ip_vs` module's split BTF on top of it, laid out as the
//! kernel lays them out, with the structs and members vipd looks up (through typedefs,
//! modifiers, arrays and anonymous structs and unions, as in a real kernel).

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;

/// One blob under construction: type ids from `next_id`, string offsets from `str_base`.
struct Blob {
    types: Vec<u8>,
    strings: Vec<u8>,
    str_base: u32,
    next_id: u32,
}

impl Blob {
    fn new(next_id: u32, str_base: u32) -> Self {
        Blob {
            types: Vec::new(),
            strings: vec![0],
            str_base,
            next_id,
        }
    }

    fn name(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.str_base + self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    fn ty(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, extra: &[u32]) -> u32 {
        let name_off = self.name(name);
        for word in [name_off, (kind << 24) | vlen, size_or_type]
            .iter()
            .chain(extra)
        {
            self.types.extend_from_slice(&word.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn int(&mut self, name: &str, bytes: u32) -> u32 {
        self.ty(name, KIND_INT, 0, bytes, &[bytes * 8])
    }

    /// A struct or union; members are (name, type, offset in bits).
    fn record(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let mut extra = Vec::new();
        for &(member, ty, bits) in members {
            extra.extend([self.name(member), ty, bits]);
        }
        self.ty(name, kind, members.len() as u32, size, &extra)
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
        out.extend_from_slice(&[1, 0]); // version, flags
        let (types, strings) = (self.types.len() as u32, self.strings.len() as u32);
        for word in [24, 0, types, types, strings] {
            out.extend_from_slice(&u32::to_le_bytes(word));
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// The kernel's blob and the module's.
pub fn kernel_and_module() -> (Vec<u8>, Vec<u8>) {
    let mut k = Blob::new(1, 0);
    let u8_ = k.int("unsigned char", 1);
    let u16_ = k.int("short unsigned int", 2);
    let u32_ = k.int("unsigned int", 4);
    let be16 = k.ty("__be16", KIND_TYPEDEF, 0, u16_, &[]);
    let be32 = k.ty("__be32", KIND_TYPEDEF, 0, u32_, &[]);
    let state = k.ty("", KIND_VOLATILE, 0, u8_, &[]);
    let ptr = k.ty("", KIND_PTR, 0, u8_, &[]);
    let in6 = k.ty("", KIND_ARRAY, 0, 0, &[u8_, u32_, 16]);
    let pair = k.record(
        KIND_STRUCT,
        "",
        8,
        &[("skc_daddr", be32, 0), ("skc_rcv_saddr", be32, 32)],
    );
    let ports = k.record(
        KIND_UNION,
        "",
        4,
        &[("skc_portpair", u32_, 0), ("skc_dport", be16, 0)],
    );
    let common = k.record(
        KIND_STRUCT,
        "sock_common",
        136,
        &[
            ("", pair, 0),
            ("skc_hash", u32_, 64),
            ("", ports, 96),
            ("skc_family", u16_, 128),
            ("skc_state", state, 144),
            ("skc_v6_daddr", in6, 448),
            ("skc_v6_rcv_saddr", in6, 576),
        ],
    );
    let sock = k.record(
        KIND_STRUCT,
        "sock",
        600,
        &[("__sk_common", common, 0), ("sk_protocol", u16_, 4096)],
    );
    k.record(
        KIND_STRUCT,
        "inet_sock",
        700,
        &[("sk", sock, 0), ("inet_sport", be16, 4800)],
    );
    k.record(
        KIND_STRUCT,
        "sk_buff",
        232,
        &[
            ("network_header", u16_, 1440),
            ("head", ptr, 1536),
            ("data", ptr, 1600),
        ],
    );
    let strings = k.str_base + k.strings.len() as u32;
    let (next_id, kernel) = (k.next_id, k.finish());

    let mut m = Blob::new(next_id, strings);
    let nf_addr = m.ty("", KIND_ARRAY, 0, 0, &[u8_, u32_, 16]);
    let addr_ptr = m.ty("", KIND_PTR, 0, nf_addr, &[]);
    m.record(
        KIND_STRUCT,
        "ip_vs_conn_param",
        40,
        &[
            ("ipvs", ptr, 0),
            ("caddr", addr_ptr, 64),
            ("vaddr", addr_ptr, 128),
            ("cport", be16, 192),
            ("vport", be16, 208),
            ("protocol", u16_, 224),
            ("af", u16_, 240),
        ],
    );
    m.record(
        KIND_STRUCT,
        "ip_vs_conn",
        128,
        &[
            ("caddr", nf_addr, 128),
            ("vaddr", nf_addr, 256),
            ("daddr", nf_addr, 384),
            ("cport", be16, 512),
            ("vport", be16, 528),
            ("dport", be16, 544),
            ("af", u16_, 576),
            ("daf", u16_, 592),
            ("protocol", u16_, 608),
        ],
    );
    m.record(KIND_STRUCT, "ip_vs_dest", 64, &[("vfwmark", u32_, 256)]);
    (kernel, m.finish())
}
