//! The DNS wire format, as much as the tests need (RFC 1035): a query for one name and
//! type with a random ID, and the parts of a reply that tell who answered: ID, rcode,
//! TXT strings and A/AAAA addresses. Names in answers may be compressed.

use std::net::IpAddr;

/// The name every lab DNS server answers with its backend's name (TXT) and address.
pub const WHICH: &str = "which.vipd.test";

/// Record types.
pub const A: u16 = 1;
pub const TXT: u16 = 16;
pub const AAAA: u16 = 28;

/// Response codes.
pub const NOERROR: u8 = 0;

/// A random 16-bit query ID (getrandom(2)).
pub fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: writes at most 2 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, 0) };
    assert_eq!(n, 2, "getrandom: {}", std::io::Error::last_os_error());
    u16::from_ne_bytes(b)
}

/// A standard recursive query (RD set) for `name` and `qtype`, class IN, with `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(17 + name.len() + 2);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // flags: RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for label in name.trim_end_matches('.').split('.') {
        assert!(
            !label.is_empty() && label.len() < 64,
            "bad DNS name {name:?}"
        );
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

/// What a reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    /// The TXT answers' text (each record's strings concatenated), in order.
    pub txt: Vec<String>,
    /// The A and AAAA answers, in order.
    pub addrs: Vec<IpAddr>,
}

impl Reply {
    /// The first TXT answer, if any.
    pub fn first_txt(&self) -> Option<&str> {
        self.txt.first().map(String::as_str)
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("reply truncated at byte {at}"))
}

/// Skips a (possibly compressed) name starting at `at`; returns the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *b.get(at).ok_or("name runs past the reply")? as usize;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => return Ok(at + 2), // pointer: ends the name here
            l if l < 64 => at += 1 + l,
            l => return Err(format!("bad label length {l:#x}")),
        }
    }
}

/// Parses a reply: header, skips the questions, reads the answers.
pub fn parse(b: &[u8]) -> Result<Reply, String> {
    if b.len() < 12 {
        return Err(format!("reply of {} bytes", b.len()));
    }
    if b[2] & 0x80 == 0 {
        return Err("QR bit clear: not a reply".into());
    }
    let mut reply = Reply {
        id: be16(b, 0)?,
        rcode: b[3] & 0x0F,
        txt: Vec::new(),
        addrs: Vec::new(),
    };
    let (qd, an) = (be16(b, 4)?, be16(b, 6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    for _ in 0..an {
        at = skip_name(b, at)?;
        let (rtype, rdlen) = (be16(b, at)?, be16(b, at + 8)? as usize);
        at += 10;
        let rdata = b
            .get(at..at + rdlen)
            .ok_or("answer data runs past the reply")?;
        at += rdlen;
        match rtype {
            TXT => {
                let mut text = Vec::new();
                let mut i = 0;
                while i < rdata.len() {
                    let l = rdata[i] as usize;
                    text.extend_from_slice(rdata.get(i + 1..i + 1 + l).ok_or("bad TXT string")?);
                    i += 1 + l;
                }
                reply.txt.push(String::from_utf8_lossy(&text).into_owned());
            }
            A if rdlen == 4 => {
                reply
                    .addrs
                    .push(IpAddr::from(<[u8; 4]>::try_from(rdata).unwrap()));
            }
            AAAA if rdlen == 16 => {
                reply
                    .addrs
                    .push(IpAddr::from(<[u8; 16]>::try_from(rdata).unwrap()));
            }
            _ => {}
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_layout() {
        let q = query(0x1234, "which.vipd.test", TXT);
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..18], b"\x05which");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 16, 0, 1]);
    }

    #[test]
    fn parses_a_compressed_reply() {
        let mut r = query(7, WHICH, TXT);
        r[2] = 0x85; // QR AA RD
        r[3] = 0x80; // RA, NOERROR
        r[7] = 2; // two answers
                  // TXT "vb1" as two strings "v" "b1", name as a pointer to the question.
        r.extend_from_slice(&[
            0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 0, 0, 5, 1, b'v', 2, b'b', b'1',
        ]);
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 198, 18, 1, 2]);
        let p = parse(&r).unwrap();
        assert_eq!((p.id, p.rcode), (7, NOERROR));
        assert_eq!(p.first_txt(), Some("vb1"));
        assert_eq!(p.addrs, vec!["198.18.1.2".parse::<IpAddr>().unwrap()]);
        assert!(parse(&r[..r.len() - 1]).is_err());
    }
}
