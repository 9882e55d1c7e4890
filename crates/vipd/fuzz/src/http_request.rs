//! The metrics endpoint's request head: framed from however the client's writes arrive
//! ([`HeadReader`]), ending at the first blank line, and its request line
//! ([`parse_request_head`]), which comes back the same when written again.

use vipd::daemon::metrics::{parse_request_head, Head, HeadReader, MAX_REQUEST_HEAD};

fn head(bytes: &[u8], read_size: usize) -> Head {
    let mut reader = HeadReader::default();
    crate::stream(bytes, read_size, |read| reader.feed(read))
        .expect("the end of the stream ends the head")
}

/// Where the first blank line ends in `bytes`, if there is one.
fn first_blank_line_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter().chain(lf).min()
}

pub fn run(data: &[u8]) {
    let (read_size, bytes) = crate::reads(data);
    let head = head(bytes, read_size);
    assert_eq!(
        head,
        self::head(bytes, usize::MAX),
        "the reads change the head"
    );
    match &head {
        Head::Complete(h) => {
            assert!(h.len() <= MAX_REQUEST_HEAD);
            assert_eq!(first_blank_line_end(bytes), Some(h.len()), "{h:?}");
        }
        Head::Closed => assert!(first_blank_line_end(bytes).is_none()),
        Head::TooLarge => assert!(bytes.len() >= MAX_REQUEST_HEAD),
    }
    let Ok(line) = parse_request_head(bytes) else {
        return;
    };
    let again = format!("{} {} HTTP/1.1\r\n\r\n", line.method, line.path);
    assert_eq!(parse_request_head(again.as_bytes()), Ok(line));
}
