//! The bytes of a UDP probe: `payload = "text"` or `payload_hex = "12 34 ab"` (and the
//! same for `expect`), in `[service.health]`.

use super::{error::Reporter, raw::Table};

/// The largest UDP payload over IPv4 (65535 - 20 - 8) and so the largest we send.
pub(crate) const MAX_PAYLOAD: usize = 65_507;

/// Hex digits, optionally separated by whitespace, `:` or `-`, to bytes.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || c == ':' || c == '-' {
            if high.is_some() {
                return Err(format!(
                    "a lone hex digit before position {i}: write each byte as two digits"
                ));
            }
            continue;
        }
        let Some(v) = c.to_digit(16) else {
            return Err(format!("{c:?} at position {i} is not a hex digit"));
        };
        let v = v as u8;
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push(h << 4 | v),
        }
    }
    if high.is_some() {
        return Err("an odd number of hex digits: write each byte as two digits".into());
    }
    Ok(out)
}

/// `Some(None)` when neither `key` nor `<key>_hex` is given, `Some(Some(bytes))` for
/// one of them, `None` when invalid (reported).
pub(crate) fn bytes(
    t: Table<'_>,
    key: &'static str,
    hex_key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<Option<Vec<u8>>> {
    let text = t.get(key);
    let hex = t.get(hex_key);
    if let (Some(_), Some(h)) = (&text, &hex) {
        r.error(
            h.at,
            format!("give either `{key}` or `{hex_key}`, not both"),
        );
        return None;
    }
    let value = match (text, hex) {
        (Some(f), None) => {
            let s = f.str(r)?;
            (s.value.as_bytes().to_vec(), s.at)
        }
        (None, Some(f)) => {
            let s = f.str(r)?;
            match parse_hex(s.value) {
                Ok(b) => (b, s.at),
                Err(why) => {
                    r.error(s.at, format!("invalid `{hex_key}`: {why}"));
                    return None;
                }
            }
        }
        _ => return Some(None),
    };
    let (b, at) = value;
    if b.len() > MAX_PAYLOAD {
        r.error(
            at,
            format!(
                "`{key}` is {} bytes; a UDP datagram holds at most {MAX_PAYLOAD}",
                b.len()
            ),
        );
        return None;
    }
    Some(Some(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_separators_and_errors() {
        assert_eq!(
            parse_hex("12 34:ab-CD").unwrap(),
            vec![0x12, 0x34, 0xab, 0xcd]
        );
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert!(parse_hex("123").unwrap_err().contains("odd number"));
        assert!(parse_hex("1 23").unwrap_err().contains("lone hex digit"));
        assert!(parse_hex("zz").unwrap_err().contains("not a hex digit"));
    }
}
