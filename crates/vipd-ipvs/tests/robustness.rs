//! Feeds pseudo-random and mutated bytes (deterministic PRNG) to every decoder: none may
//! panic, and every failure must be a typed decode error.

mod common;
use common::*;

use std::net::IpAddr;

use vipd_ipvs::attrs::*;
use vipd_ipvs::{
    decode_family_id, decode_ipvs_message, decode_reply, AddressFamily, Destination, Error, Info,
    Service, Stats, Timeouts,
};

const FAMILY: u16 = 0x1c;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Asserts the failure, if any, is a typed decode error; returns whether decoding succeeded.
fn check<T>(r: Result<T, Error>, what: &str, input: &[u8]) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => {
            assert!(
                e.is_decode_error(),
                "{what}: non-decode error {e:?} for input {input:02x?}"
            );
            false
        }
    }
}

/// Valid attribute sets (the payloads inside genlmsghdr).
fn attr_seeds() -> Vec<(u8, Vec<u8>)> {
    let s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    vec![
        (
            IPVS_CMD_NEW_SERVICE,
            kernel_service_addr(
                AF_INET,
                6,
                ip("10.0.0.1"),
                80,
                "wrr",
                Some("sip"),
                3,
                300,
                [255, 255, 255, 0],
                Some((s, s)),
            ),
        ),
        (
            IPVS_CMD_NEW_SERVICE,
            kernel_service_addr(
                AF_INET6,
                17,
                ip("2001:db8::1"),
                53,
                "sh",
                None,
                0x18,
                0,
                128u32.to_ne_bytes(),
                None,
            ),
        ),
        (
            IPVS_CMD_NEW_DEST,
            kernel_dest(
                ip("10.0.0.2"),
                8080,
                IP_VS_CONN_F_TUNNEL,
                5,
                (1, 6080, 3),
                (100, 10),
                (1, 2, 3),
                Some(AF_INET),
                Some(s),
            ),
        ),
        (
            IPVS_CMD_NEW_DEST,
            kernel_dest(
                ip("fd00::2"),
                80,
                IP_VS_CONN_F_DROUTE,
                1,
                (0, 0, 0),
                (0, 0),
                (0, 0, 0),
                Some(AF_INET6),
                None,
            ),
        ),
        (
            IPVS_CMD_SET_INFO,
            [a_u32(1, 0x010201), a_u32(2, 4096)].concat(),
        ),
        (
            IPVS_CMD_SET_CONFIG,
            [a_u32(4, 900), a_u32(5, 120), a_u32(6, 300)].concat(),
        ),
    ]
}

/// Valid datagrams.
fn datagram_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = attr_seeds()
        .into_iter()
        .map(|(cmd, attrs)| {
            [
                nlmsg(FAMILY, NLM_F_MULTI, 1, &genl(cmd, &attrs)),
                nlmsg(FAMILY, NLM_F_MULTI, 1, &genl(cmd, &attrs)),
                done(1, 0),
            ]
            .concat()
        })
        .collect();
    out.push(
        [
            nlmsgerr(2, -17, NLM_F_CAPPED | NLM_F_ACK_TLVS, &a_str(1, "exists")),
            ack(3),
            done(4, -22),
        ]
        .concat(),
    );
    out
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.byte();
            }
            2 => v.truncate(rng.below(len + 1)),
            3 => {
                let n = rng.below(16);
                let extra = rng.bytes(n);
                let at = rng.below(len + 1);
                v.splice(at..at, extra);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(16)).min(len);
                v.drain(a..b);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(32)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            // Length and type fields are where decoders get hurt: hit u16s with
            // interesting values.
            6 | 7 if len >= 2 => {
                let i = rng.below(len - 1) & !1;
                let val: u16 = match rng.below(5) {
                    0 => 0,
                    1 => rng.below(24) as u16,
                    2 => u16::MAX,
                    3 => 0x8000 | rng.below(16) as u16,
                    _ => rng.next_u64() as u16,
                };
                v[i..i + 2].copy_from_slice(&val.to_ne_bytes());
            }
            8 if len >= 4 => {
                let i = rng.below(len - 3) & !3;
                let val: u32 = match rng.below(3) {
                    0 => rng.below(64) as u32,
                    1 => u32::MAX,
                    _ => rng.next_u64() as u32,
                };
                v[i..i + 4].copy_from_slice(&val.to_ne_bytes());
            }
            _ => {}
        }
    }
    v
}

/// Random but attribute-shaped bytes: headers with plausible lengths and types, nested at
/// random.
fn random_attrs(rng: &mut Rng, depth: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..rng.below(6) {
        let kind = rng.below(20) as u16 | if rng.below(4) == 0 { 0x8000 } else { 0 };
        let payload = if depth < 3 && rng.below(3) == 0 {
            random_attrs(rng, depth + 1)
        } else {
            let n = [0, 1, 2, 4, 8, 16, rng.below(40)][rng.below(7)];
            rng.bytes(n)
        };
        v.extend_from_slice(&nla(kind, &payload));
    }
    v
}

fn all_attr_decoders(attrs: &[u8]) {
    let _ = check(Service::decode_attrs(attrs), "Service", attrs);
    let _ = check(Destination::decode_attrs(attrs, None), "Destination", attrs);
    let _ = check(
        Destination::decode_attrs(attrs, Some(AddressFamily::Inet6)),
        "Destination",
        attrs,
    );
    let _ = check(Stats::decode_attrs(attrs), "Stats", attrs);
    let _ = check(Info::decode_attrs(attrs), "Info", attrs);
    let _ = check(Timeouts::decode_attrs(attrs), "Timeouts", attrs);
    for cmd in [
        IPVS_CMD_NEW_SERVICE,
        IPVS_CMD_NEW_DEST,
        IPVS_CMD_SET_INFO,
        IPVS_CMD_SET_CONFIG,
        IPVS_CMD_GET_DAEMON,
    ] {
        let _ = check(decode_ipvs_message(cmd, attrs, None), "message", attrs);
    }
    match decode_family_id(1, attrs) {
        Ok(_) => {}
        Err(e) => assert!(e.is_decode_error(), "family id: {e:?}"),
    }
}

#[test]
fn mutated_datagrams() {
    let seeds = datagram_seeds();
    let mut rng = Rng(0x5eed_0001);
    let mut ok = 0;
    for _ in 0..60_000 {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        ok += usize::from(check(decode_reply(&input), "decode_reply", &input));
    }
    // Both outcomes must be well represented, or the mutations test nothing.
    assert!((5_000..55_000).contains(&ok), "{ok} of 60000 decoded");
}

#[test]
fn random_datagrams() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..40_000 {
        let mut input = if rng.below(2) == 0 {
            let n = rng.below(96);
            rng.bytes(n)
        } else {
            // A plausible header so decoding goes past the framing.
            let msg_type = [FAMILY, 1, 2, 3, 4, rng.next_u64() as u16][rng.below(6)];
            let mut payload = vec![rng.byte() % 20, 1, 0, 0];
            payload.extend_from_slice(&random_attrs(&mut rng, 0));
            nlmsg(msg_type, rng.next_u64() as u16, 1, &payload)
        };
        if rng.below(4) == 0 {
            input = mutate(&mut rng, &input);
        }
        let _ = check(decode_reply(&input), "decode_reply", &input);
    }
}

#[test]
fn mutated_attributes() {
    let seeds = attr_seeds();
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..30_000 {
        let (_, attrs) = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, attrs);
        all_attr_decoders(&input);
        // The inside of the nest too.
        if input.len() > 4 {
            all_attr_decoders(&input[4..]);
        }
    }
}

#[test]
fn random_attributes() {
    let mut rng = Rng(0x5eed_0004);
    for _ in 0..30_000 {
        let input = random_attrs(&mut rng, 0);
        all_attr_decoders(&input);
        let n = rng.below(64);
        all_attr_decoders(&rng.bytes(n));
    }
}

#[test]
fn every_truncation_of_every_seed() {
    for seed in datagram_seeds() {
        for n in 0..seed.len() {
            let _ = check(decode_reply(&seed[..n]), "decode_reply", &seed[..n]);
        }
    }
    for (_, attrs) in attr_seeds() {
        for n in 0..attrs.len() {
            all_attr_decoders(&attrs[..n]);
        }
    }
}
