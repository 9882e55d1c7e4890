//! Tracepoint record layouts, read from `events/<category>/<name>/format` in tracefs.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted (looked in /sys/kernel/tracing and /sys/kernel/debug/tracing)"
    )]
    NotMounted,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracepoint {tracepoint}: malformed format line {line:?}")]
    Malformed { tracepoint: String, line: String },
    #[error("tracepoint {tracepoint} has no field {field}")]
    MissingField { tracepoint: String, field: String },
    #[error("tracepoint {tracepoint}: field {field} is {actual} bytes, expected {expected}")]
    FieldSize {
        tracepoint: String,
        field: String,
        actual: u16,
        expected: u16,
    },
}

/// Where tracefs is mounted. If it is not mounted anywhere, mounts it at its standard
/// place, `/sys/kernel/tracing`, as perf and bpftrace do.
pub fn root() -> Result<PathBuf, TracefsError> {
    let find = || {
        ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    // SAFETY: constant NUL-terminated strings; mount(2) has no other preconditions.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "mounting tracefs");
    }
    find().ok_or(TracefsError::NotMounted)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub size: u16,
}

/// The fields of one tracepoint's record.
#[derive(Debug)]
pub struct Format {
    tracepoint: String,
    fields: HashMap<String, Field>,
}

impl Format {
    /// Reads `category/name` from the mounted tracefs.
    pub fn read(category: &str, name: &str) -> Result<Self, TracefsError> {
        Self::read_from(&root()?, category, name)
    }

    pub fn read_from(root: &Path, category: &str, name: &str) -> Result<Self, TracefsError> {
        let path = root.join("events").join(category).join(name).join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| TracefsError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&format!("{category}/{name}"), &text)
    }

    /// Parses lines such as `field:__u16 sport; offset:24; size:2; signed:0;` (the kernel
    /// separates the parts with tabs).
    pub fn parse(tracepoint: &str, text: &str) -> Result<Self, TracefsError> {
        let malformed = |line: &str| TracefsError::Malformed {
            tracepoint: tracepoint.to_string(),
            line: line.to_string(),
        };
        let mut fields = HashMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("field:"))
        {
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.split(';').map(str::trim) {
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.parse::<u16>().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.parse::<u16>().ok();
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
                return Err(malformed(line));
            };
            // The name is the declaration's last word, without an array suffix.
            let name = decl
                .rsplit(|c: char| c.is_whitespace() || c == '*')
                .next()
                .and_then(|w| w.split('[').next())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| malformed(line))?;
            fields.insert(name.to_string(), Field { offset, size });
        }
        Ok(Self {
            tracepoint: tracepoint.to_string(),
            fields,
        })
    }

    /// The offset of `field`, checking that it is `size` bytes wide.
    pub fn offset(&self, field: &str, size: u16) -> Result<u16, TracefsError> {
        let f = self
            .fields
            .get(field)
            .ok_or_else(|| TracefsError::MissingField {
                tracepoint: self.tracepoint.clone(),
                field: field.to_string(),
            })?;
        if f.size != size {
            return Err(TracefsError::FieldSize {
                tracepoint: self.tracepoint.clone(),
                field: field.to_string(),
                actual: f.size,
                expected: size,
            });
        }
        Ok(f.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "name: inet_sock_set_state
ID: 1386
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:int oldstate;	offset:16;	size:4;	signed:1;
	field:__u16 sport;	offset:24;	size:2;	signed:0;
	field:__u8 saddr_v6[16];	offset:40;	size:16;	signed:0;

print fmt: \"family=%s\"";

    #[test]
    fn parses_scalars_pointers_and_arrays() {
        let f = Format::parse("sock/inet_sock_set_state", SAMPLE).unwrap();
        assert_eq!(f.offset("common_type", 2).unwrap(), 0);
        assert_eq!(f.offset("skaddr", 8).unwrap(), 8);
        assert_eq!(f.offset("oldstate", 4).unwrap(), 16);
        assert_eq!(f.offset("sport", 2).unwrap(), 24);
        assert_eq!(f.offset("saddr_v6", 16).unwrap(), 40);
    }

    #[test]
    fn names_missing_fields_and_wrong_sizes() {
        let f = Format::parse("sock/inet_sock_set_state", SAMPLE).unwrap();
        let e = f.offset("dport", 2).unwrap_err().to_string();
        assert_eq!(e, "tracepoint sock/inet_sock_set_state has no field dport");
        let e = f.offset("sport", 4).unwrap_err().to_string();
        assert!(e.contains("field sport is 2 bytes, expected 4"), "{e}");
    }

    #[test]
    fn rejects_lines_without_offset() {
        let e = Format::parse("a/b", "\tfield:int x;\tsize:4;\n").unwrap_err();
        assert!(matches!(e, TracefsError::Malformed { .. }), "{e}");
    }

    #[test]
    fn host_kernel_format_has_the_fields_vipd_reads() {
        let f = Format::read("sock", "inet_sock_set_state").expect("tracefs on this host");
        for (name, size) in [("sport", 2), ("dport", 2), ("family", 2), ("saddr_v6", 16)] {
            f.offset(name, size).unwrap();
        }
    }
}
