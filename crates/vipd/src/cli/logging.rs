//! Logging: lines on stderr, as text (the default) or as one JSON object per line
//! (`--log-format json`), filtered by `--log`.
//!
//! When stderr is the systemd journal (the `JOURNAL_STREAM` variable systemd sets names
//! stderr's device and inode), every line starts with its syslog priority as sd-daemon
//! writes it: `<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace; journald
//! strips the prefix and files the line under that priority. Text lines then carry no
//! timestamp (journald adds its own) and never ANSI colours. JSON lines keep their
//! `timestamp` field and get the prefix too, so `journalctl -o cat` still gives bare JSON.

use std::{
    fmt,
    io::IsTerminal,
    os::{fd::AsFd, unix::fs::MetadataExt},
};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{
        format::{Format, Full, Json, JsonFields, Writer},
        time::SystemTime,
        FmtContext, FormatEvent, FormatFields,
    },
    registry::LookupSpan,
    EnvFilter,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `timestamp LEVEL target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and every field.
    Json,
}

/// The sd-daemon priority of a level: error 3, warn 4, info 6, debug and trace 7.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether `journal_stream` (the value of `JOURNAL_STREAM`, `device:inode` in decimal)
/// names the file with this device and inode number.
pub fn names_file(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Whether stderr is connected to the journal.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    names_file(&stream.to_string_lossy(), meta.dev(), meta.ino())
}

/// The line format: one of the formats, with the journal's priority prefix or not.
pub struct Lines {
    inner: Inner,
    /// Prefix every line with its priority (stderr is the journal).
    journal: bool,
}

enum Inner {
    Text(Format<Full, SystemTime>),
    /// Text for the journal: no timestamp.
    Bare(Format<Full, ()>),
    Json(Format<Json, SystemTime>),
}

impl Lines {
    pub fn new(format: LogFormat, journal: bool) -> Self {
        let text = tracing_subscriber::fmt::format();
        let inner = match (format, journal) {
            (LogFormat::Text, false) => Inner::Text(text),
            (LogFormat::Text, true) => Inner::Bare(text.without_time()),
            (LogFormat::Json, _) => Inner::Json(text.json().flatten_event(true)),
        };
        Lines { inner, journal }
    }

    /// Whether JSON lines need the JSON field formatter.
    fn is_json(&self) -> bool {
        matches!(self.inner, Inner::Json(_))
    }

    fn format<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        match &self.inner {
            Inner::Text(f) => f.format_event(ctx, writer, event),
            Inner::Bare(f) => f.format_event(ctx, writer, event),
            Inner::Json(f) => f.format_event(ctx, writer, event),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !self.journal {
            return self.format(ctx, writer, event);
        }
        // Each line of a multi-line message gets the prefix, or journald would file the
        // continuation lines as info.
        let mut line = String::new();
        self.format(ctx, Writer::new(&mut line), event)?;
        let prefix = priority(event.metadata().level());
        for l in line.lines() {
            writeln!(writer, "<{prefix}>{l}")?;
        }
        Ok(())
    }
}

/// What was chosen at start, for the last word of a failed command.
pub struct Logging {
    /// Errors go through the logger (journal or JSON) rather than as a plain line.
    structured: bool,
}

/// Installs the global subscriber for `filter` (EnvFilter syntax) and `format`.
pub fn init(filter: &str, format: LogFormat) -> Logging {
    let journal = stderr_is_journal();
    let lines = Lines::new(format, journal);
    let ansi = !journal && !lines.is_json() && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if lines.is_json() {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(lines)
            .init();
    } else {
        builder.event_format(lines).init();
    }
    Logging {
        structured: journal || format == LogFormat::Json,
    }
}

impl Logging {
    /// Reports the error a command ended with: through the logger when lines are for a
    /// machine (the journal, JSON), else as a plain `vipd: ...` line for a person.
    pub fn fatal(&self, e: &anyhow::Error) {
        let line = vipd::error_line::line(e.chain());
        if self.structured && tracing::enabled!(Level::ERROR) {
            tracing::error!("{line}");
        } else {
            eprintln!("vipd: {line}");
        }
    }
}

#[cfg(test)]
#[path = "logging_tests.rs"]
mod tests;
