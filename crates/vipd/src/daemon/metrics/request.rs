//! The metrics endpoint's request: framing its head from the reads of a connection, and
//! reading its request line. Pure, so that both are tested and fuzzed without a socket.

/// The longest request head (request line and headers) read.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The head, up to and including the blank line that ends it.
    Complete(Vec<u8>),
    TooLarge,
    /// The client closed before a full head.
    Closed,
}

/// Collects a request head, ended by a blank line (`\r\n\r\n`, or `\n\n`).
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Takes the bytes of one read (empty: the client closed); the head once complete.
    pub fn feed(&mut self, data: &[u8]) -> Option<Head> {
        if data.is_empty() {
            return Some(Head::Closed);
        }
        // A blank line may straddle two reads: look back three bytes.
        let from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(data);
        let tail = &self.buf[from..];
        // The first blank line, of either kind, ends the head.
        let crlf = tail
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        let lf = tail.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
        let end = crlf.into_iter().chain(lf).min().map(|e| from + e);
        if let Some(end) = end.filter(|e| *e <= MAX_REQUEST_HEAD) {
            let mut head = std::mem::take(&mut self.buf);
            head.truncate(end);
            return Some(Head::Complete(head));
        }
        if self.buf.len() >= MAX_REQUEST_HEAD {
            return Some(Head::TooLarge);
        }
        None
    }
}

/// A request line's method and path (the target without its query or fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub path: String,
}

/// Not `METHOD TARGET HTTP/1.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad request line")]
pub struct BadRequest;

/// The request line of a head (invalid UTF-8 replaced).
pub fn parse_request_head(head: &[u8]) -> Result<RequestLine, BadRequest> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BadRequest);
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    Ok(RequestLine {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(method: &str, path: &str) -> Result<RequestLine, BadRequest> {
        Ok(RequestLine {
            method: method.into(),
            path: path.into(),
        })
    }

    #[test]
    fn request_lines() {
        let p = parse_request_head;
        assert_eq!(
            p(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            line("GET", "/metrics")
        );
        assert_eq!(p(b"HEAD /a#b HTTP/1.0\n\n"), line("HEAD", "/a"));
        assert_eq!(p(b"GET /metrics HTTP/2\r\n\r\n"), Err(BadRequest));
        assert_eq!(p(b"GET  /metrics HTTP/1.1\r\n\r\n"), Err(BadRequest));
        assert_eq!(p(b"GET /metrics\r\n\r\n"), Err(BadRequest));
        assert_eq!(p(b""), Err(BadRequest));
    }

    #[test]
    fn a_head_may_come_in_pieces() {
        let mut r = HeadReader::default();
        assert_eq!(r.feed(b"GET / HTTP/1.1\r\n\r"), None);
        assert_eq!(
            r.feed(b"\nrest"),
            Some(Head::Complete(b"GET / HTTP/1.1\r\n\r\n".to_vec()))
        );
        let mut r = HeadReader::default();
        assert_eq!(r.feed(b"GET / HTTP/1.1\n"), None);
        assert_eq!(r.feed(b""), Some(Head::Closed));
        let mut r = HeadReader::default();
        assert_eq!(r.feed(&[b'x'; MAX_REQUEST_HEAD]), Some(Head::TooLarge));
    }

    /// Found by fuzzing: a `\r\n\r\n` later in the same read won over an earlier `\n\n`,
    /// so a head was read past its end, and refused as too large when that later blank
    /// line was past the limit.
    #[test]
    fn the_first_blank_line_ends_the_head_whatever_its_kind() {
        let mut r = HeadReader::default();
        assert_eq!(
            r.feed(b"GET / HTTP/1.1\n\nX: y\r\n\r\n"),
            Some(Head::Complete(b"GET / HTTP/1.1\n\n".to_vec()))
        );
        let mut head = b"GET /metrics HTTP/1.1\nX-Pad: ".to_vec();
        head.resize(MAX_REQUEST_HEAD - 100, b'a');
        let mut r = HeadReader::default();
        assert_eq!(r.feed(&head), None);
        let mut last = b"\n\n".to_vec();
        last.resize(200, b'b');
        last.extend_from_slice(b"\r\n\r\n");
        head.extend_from_slice(b"\n\n");
        assert_eq!(r.feed(&last), Some(Head::Complete(head)));
    }
}
