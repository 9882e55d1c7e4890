//! The TOML config: parsed and validated into a desired state.
//!
//! [`load`] and [`parse`] check the whole file and either return a [`Config`] in which every
//! value is valid and typed, or [`Diagnostics`] listing every problem found, each with
//! `file:line:col`. Nothing is returned half-checked, so nothing is half-applied.
//!
//! Layers, one file each: `raw` reads the TOML tree with the location of every key and
//! value; `validate` (top level, `[daemon]`, services), `dataplane` (`dataplane`, `[xdp]`
//! and what only IPVS has), `policy` (tunnel, persistence,
//! flags, health; `syn_rto` its SYN timeout) and `backend` turn it into the `model` types (re-exported here); `addr` and `duration`
//! parse the string forms; `error` holds the diagnostics.

mod addr;
mod backend;
mod dataplane;
mod duration;
mod error;
mod model;
mod payload;
mod policy;
mod raw;
mod suggest;
mod syn_rto;
mod validate;

use std::path::Path;

pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{Diagnostic, Diagnostics, Location};
pub use model::*;
pub use syn_rto::{AutoRto, SynRto, SYN_RTO_MAX, SYN_RTO_MIN};

pub(crate) use addr::not_unicast;

/// Where the config lives unless a command is told otherwise (`--config` or
/// `VIPD_CONFIG`).
pub const DEFAULT_CONFIG: &str = "/etc/vipd/vipd.toml";

/// The largest config file read: far above any real one (10,000 services fit in 2 MiB),
/// small enough that a wrong path (a device, a log) cannot exhaust memory.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Reads and checks a config file. Messages name the file as `path` is written.
pub fn load(path: impl AsRef<Path>) -> Result<Config, Diagnostics> {
    let path = path.as_ref();
    match read(path) {
        Ok(text) => parse(path, &text),
        Err(message) => Err(vec![Diagnostic {
            file: path.display().to_string(),
            location: None,
            message,
        }]
        .into()),
    }
}

/// The text of the config file at `path`, at most [`MAX_CONFIG_BYTES`]; else what is
/// wrong, as a message.
pub fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the config: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "the file is larger than {} MiB; is this the config?",
            MAX_CONFIG_BYTES >> 20
        ));
    }
    Ok(text)
}

/// Checks config text; `path` is only used in messages.
pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Config, Diagnostics> {
    let mut r = error::Reporter::new(path.as_ref().display().to_string(), text);
    let config = raw::parse_document(text, &mut r)
        .map(|doc| validate::config(raw::Table::root(&doc), &mut r));
    match (r.finish(), config) {
        (None, Some(config)) => Ok(config),
        (Some(diagnostics), _) => Err(diagnostics),
        (None, None) => unreachable!("a TOML syntax error is always reported"),
    }
}

#[cfg(test)]
mod dataplane_tests;
#[cfg(test)]
mod syn_rto_tests;
#[cfg(test)]
mod tests;
