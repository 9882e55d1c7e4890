//! The control socket's wire format. A client sends one line and reads one JSON line
//! back, then the server closes.
//!
//! Requests: `status` (or `{"op":"status"}`); `{"op":"reload"}` with an optional
//! `"config"` (the absolute path the client expects the daemon to run); and the
//! operator's commands on one backend, `{"op":"drain"|"undrain"|"readmit",
//! "service":"web","backend":"198.18.1.2:8080"}` and `{"op":"quarantine", ...,
//! "for_ms":60000}` (`for_ms` optional).
//!
//! Answers: `{"ok":true,"view":{...}}` for status, `{"ok":true,"message":"..."}` for a
//! command, or `{"ok":false,"error":"...","code":"..."}`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    Reload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<String>,
    },
    Drain {
        service: String,
        backend: SocketAddr,
    },
    Undrain {
        service: String,
        backend: SocketAddr,
    },
    Quarantine {
        service: String,
        backend: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_ms: Option<u64>,
    },
    Readmit {
        service: String,
        backend: SocketAddr,
    },
}

impl Request {
    /// A request line without its newline: `status`, or a JSON request.
    pub fn parse(line: &str) -> Result<Request, String> {
        if line == "status" {
            return Ok(Request::Status);
        }
        serde_json::from_str(line).map_err(|e| {
            format!("unknown request {line:?} (expected \"status\" or a JSON request: {e})")
        })
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = match self {
            Request::Status => b"status".to_vec(),
            other => serde_json::to_vec(other).expect("a request serializes"),
        };
        line.push(b'\n');
        line
    }
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "V: Deserialize<'de>"))]
pub struct Reply<V> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub view: Option<V>,
    /// What a command did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Machine-readable error: one of the `CODE_*` constants.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
}

/// The client is neither root nor the daemon's user.
pub const CODE_DENIED: &str = "permission-denied";
/// Not a request this daemon knows.
pub const CODE_BAD_REQUEST: &str = "bad-request";
pub const CODE_TOO_LONG: &str = "too-long";
/// A reload whose config was rejected; the running one stays.
pub const CODE_REJECTED: &str = "rejected";
/// The service or backend named is not configured, or the daemon runs another config.
pub const CODE_NOT_FOUND: &str = "not-found";
/// The command could not be carried out (e.g. its record could not be written).
pub const CODE_FAILED: &str = "failed";
/// The daemon is stopping or does not take commands.
pub const CODE_UNAVAILABLE: &str = "unavailable";

/// One JSON line.
fn line<V: Serialize>(reply: &Reply<V>) -> Vec<u8> {
    let mut line = serde_json::to_vec(reply).expect("a reply serializes");
    line.push(b'\n');
    line
}

pub fn error_line(code: &str, error: &str) -> Vec<u8> {
    line::<()>(&Reply {
        ok: false,
        view: None,
        message: None,
        error: Some(error.to_owned()),
        code: Some(code.to_owned()),
    })
}

pub fn view_line<V: Serialize>(view: &V) -> Vec<u8> {
    line(&Reply {
        ok: true,
        view: Some(view),
        message: None,
        error: None,
        code: None,
    })
}

pub fn message_line(message: &str) -> Vec<u8> {
    line::<()>(&Reply {
        ok: true,
        view: None,
        message: Some(message.to_owned()),
        error: None,
        code: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_status_stays_a_plain_word() {
        assert_eq!(Request::parse("status"), Ok(Request::Status));
        assert_eq!(Request::Status.to_line(), b"status\n");
        let drain = Request::Drain {
            service: "web".into(),
            backend: "198.18.1.2:8080".parse().unwrap(),
        };
        let line = drain.to_line();
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"op\":\"drain\",\"service\":\"web\",\"backend\":\"198.18.1.2:8080\"}\n"
        );
        let text = std::str::from_utf8(&line).unwrap().trim_end();
        assert_eq!(Request::parse(text), Ok(drain));
        assert_eq!(
            Request::parse(r#"{"op":"reload"}"#),
            Ok(Request::Reload { config: None })
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let e = Request::parse("reload").unwrap_err();
        assert!(e.contains("unknown request \"reload\""), "{e}");
        let e = Request::parse(r#"{"op":"drain","service":"web","backend":"nope"}"#).unwrap_err();
        assert!(e.contains("invalid socket address"), "{e}");
        let e = Request::parse(r#"{"op":"drain","service":"web","backend":"198.18.1.2:80","x":1}"#)
            .unwrap_err();
        assert!(e.contains("unknown field `x`"), "{e}");
    }
}
