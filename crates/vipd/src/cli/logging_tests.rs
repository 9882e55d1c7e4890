use std::{
    io,
    sync::{Arc, Mutex},
};

use tracing_subscriber::fmt::{format::JsonFields, MakeWriter};

use super::*;

/// Lines written by the subscriber under test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What `emit` logs, rendered as `format` would be with or without the journal.
fn render(format: LogFormat, journal: bool, emit: impl FnOnce()) -> String {
    let buffer = Buffer::default();
    let lines = Lines::new(format, journal);
    let builder = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false);
    if lines.is_json() {
        let subscriber = builder
            .fmt_fields(JsonFields::new())
            .event_format(lines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
    } else {
        tracing::subscriber::with_default(builder.event_format(lines).finish(), emit);
    }
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn every_level() {
    tracing::error!("e");
    tracing::warn!("w");
    tracing::info!("i");
    tracing::debug!("d");
    tracing::trace!("t");
}

#[test]
fn journal_text_lines_carry_the_priority_and_no_timestamp() {
    let out = render(LogFormat::Text, true, every_level);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, (prefix, level, message)) in lines.iter().zip([
        ("<3>", "ERROR", "e"),
        ("<4>", " WARN", "w"),
        ("<6>", " INFO", "i"),
        ("<7>", "DEBUG", "d"),
        ("<7>", "TRACE", "t"),
    ]) {
        let expected = format!("{prefix}{level} vipd::cli::logging::tests: {message}");
        assert_eq!(*line, expected);
    }
}

#[test]
fn every_line_of_a_multi_line_message_is_prefixed() {
    let out = render(LogFormat::Text, true, || {
        tracing::warn!(service = "web", "first\nsecond")
    });
    assert_eq!(
        out,
        "<4> WARN vipd::cli::logging::tests: first\n<4>second service=\"web\"\n"
    );
}

#[test]
fn text_outside_the_journal_has_a_timestamp_and_no_prefix() {
    let out = render(LogFormat::Text, false, || {
        tracing::info!(weight = 7, "hello")
    });
    let line = out.trim_end();
    assert!(!line.starts_with('<'), "{line}");
    // An RFC 3339 timestamp first: 2024-01-02T03:04:05.678901Z
    let (timestamp, rest) = line.split_once(' ').unwrap();
    assert_eq!(timestamp.as_bytes()[4], b'-', "{line}");
    assert!(
        timestamp.contains('T') && timestamp.ends_with('Z'),
        "{line}"
    );
    assert_eq!(
        rest.trim_start(),
        "INFO vipd::cli::logging::tests: hello weight=7"
    );
}

#[test]
fn json_is_one_object_per_line_with_every_field() {
    let out = render(LogFormat::Json, false, || {
        tracing::warn!(
            service = "web",
            backend = %"198.18.1.2:8080",
            weight = 0u32,
            "quarantined"
        );
        tracing::info!("second \"line\"");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["target"], "vipd::cli::logging::tests");
    assert_eq!(v["message"], "quarantined");
    assert_eq!(v["service"], "web");
    assert_eq!(v["backend"], "198.18.1.2:8080");
    assert_eq!(v["weight"], 0);
    let ts = v["timestamp"].as_str().unwrap();
    assert!(ts.contains('T') && ts.ends_with('Z'), "{ts}");
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(v["message"], "second \"line\"");
    assert_eq!(v["level"], "INFO");
}

#[test]
fn json_in_the_journal_is_prefixed_and_still_json() {
    let out = render(LogFormat::Json, true, || {
        tracing::error!(cause = "refused", "x")
    });
    let body = out.trim_end().strip_prefix("<3>").expect(&out);
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["cause"], "refused");
    assert_eq!(v["level"], "ERROR");
}

#[test]
fn priorities() {
    assert_eq!(priority(&Level::ERROR), 3);
    assert_eq!(priority(&Level::WARN), 4);
    assert_eq!(priority(&Level::INFO), 6);
    assert_eq!(priority(&Level::DEBUG), 7);
    assert_eq!(priority(&Level::TRACE), 7);
}

#[test]
fn journal_stream_names_one_file() {
    assert!(names_file("2049:1234", 2049, 1234));
    assert!(names_file("2049:1234\n", 2049, 1234));
    assert!(!names_file("2049:1235", 2049, 1234));
    assert!(!names_file("2048:1234", 2049, 1234));
    assert!(!names_file("2049", 2049, 1234));
    assert!(!names_file("", 2049, 1234));
    assert!(!names_file("x:y", 2049, 1234));
}
