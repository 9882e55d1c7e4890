//! Framing of the control socket's request: one line, read from as many reads as the
//! client's writes arrive in. Pure, so that it is tested and fuzzed without a socket.

/// The longest request line accepted, newline included (a reload names a path).
pub const MAX_REQUEST: usize = 8192;

/// What a client sent: its request line (trimmed, invalid UTF-8 replaced), or more than
/// [`MAX_REQUEST`] bytes without a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    TooLong,
}

/// Collects one request line; the end of the stream ends it too.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// Takes the bytes of one read (empty: the end of the stream); the line once it is
    /// complete. Bytes after the newline are ignored.
    pub fn feed(&mut self, data: &[u8]) -> Option<Line> {
        let end = data.iter().position(|&b| b == b'\n');
        self.buf
            .extend_from_slice(&data[..end.unwrap_or(data.len())]);
        if self.buf.len() >= MAX_REQUEST {
            return Some(Line::TooLong);
        }
        if data.is_empty() || end.is_some() {
            let line = String::from_utf8_lossy(&self.buf);
            return Some(Line::Text(line.trim().to_owned()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_may_come_in_pieces_and_ends_at_newline_or_end_of_stream() {
        let mut r = LineReader::default();
        assert_eq!(r.feed(b" sta"), None);
        assert_eq!(r.feed(b"tus\nignored"), Some(Line::Text("status".into())));
        let mut r = LineReader::default();
        assert_eq!(r.feed(b"status"), None);
        assert_eq!(r.feed(b""), Some(Line::Text("status".into())));
    }

    #[test]
    fn too_long_without_newline_whatever_the_pieces() {
        let mut r = LineReader::default();
        assert_eq!(r.feed(&[b'x'; MAX_REQUEST - 1]), None);
        assert_eq!(r.feed(b"x"), Some(Line::TooLong));
        let mut r = LineReader::default();
        assert_eq!(r.feed(&[b'x'; MAX_REQUEST + 5]), Some(Line::TooLong));
        let mut r = LineReader::default();
        let mut fits = vec![b'x'; MAX_REQUEST - 1];
        fits.push(b'\n');
        assert!(matches!(r.feed(&fits), Some(Line::Text(t)) if t.len() == MAX_REQUEST - 1));
    }
}
