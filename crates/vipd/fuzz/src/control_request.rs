//! The control socket's request: its line, however the client's writes arrive
//! ([`LineReader`]), and the request in it ([`Request::parse`]), which comes back the
//! same from its own line ([`Request::to_line`]).

use vipd::daemon::{
    control_line::{Line, LineReader, MAX_REQUEST},
    control_proto::Request,
};

fn line(bytes: &[u8], read_size: usize) -> Line {
    let mut reader = LineReader::default();
    crate::stream(bytes, read_size, |read| reader.feed(read))
        .expect("the end of the stream ends the line")
}

pub fn run(data: &[u8]) {
    let (read_size, bytes) = crate::reads(data);
    let line = line(bytes, read_size);
    assert_eq!(
        line,
        self::line(bytes, usize::MAX),
        "the reads change the line"
    );
    let Line::Text(text) = line else {
        return;
    };
    // Under MAX_REQUEST bytes as read; a replaced invalid byte takes three as text.
    assert!(
        text.len() < 3 * MAX_REQUEST && !text.contains('\n'),
        "{text:?}"
    );
    let Ok(request) = Request::parse(&text) else {
        return;
    };
    let wire = request.to_line();
    assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let again = std::str::from_utf8(&wire).expect("a request line is UTF-8");
    assert_eq!(Request::parse(again.trim_end()), Ok(request));
}
