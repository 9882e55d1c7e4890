//! The TOML config: parsed and validated into a desired state.
//!
//! [`load`] and [`parse`] check the whole file and either return a [`Config`] in which every
//! value is valid and typed, or [`Diagnostics`] listing every problem found, each with
//! `file:line:col`. Nothing is returned half-checked, so nothing is half-applied.
//! [`load`] takes the drop-in files (`conf.d/*.toml` beside the main file) too, as one
//! config ([`parse_set`]); `[defaults]` (in `defaults`) is what services inherit.
//!
//! Layers, one file each: `raw` reads the TOML tree with the location of every key and
//! value; `validate` (top level, `[daemon]`, services), `dataplane` (`dataplane`, `[xdp]`
//! and what only IPVS has), `policy` (tunnel, persistence,
//! flags, health; `syn_rto` its SYN timeout) and `backend` turn it into the `model` types (re-exported here); `addr` and `duration`
//! parse the string forms; `error` holds the diagnostics.

mod addr;
mod backend;
mod dataplane;
mod defaults;
mod dns;
mod duration;
mod error;
mod model;
mod payload;
mod policy;
mod raw;
mod socket;
mod suggest;
mod syn_rto;
mod validate;

use std::path::{Path, PathBuf};

pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{Diagnostic, Diagnostics, Location};
pub use model::*;
pub use syn_rto::{AutoRto, SynRto, SYN_RTO_MAX, SYN_RTO_MIN};

pub(crate) use addr::not_unicast;
pub(crate) use backend::MAX_BACKENDS;

/// Where the config lives unless a command is told otherwise (`--config` or
/// `VIPD_CONFIG`).
pub const DEFAULT_CONFIG: &str = "/etc/vipd/vipd.toml";

/// The largest config file read: far above any real one (10,000 services fit in 2 MiB),
/// small enough that a wrong path (a device, a log) cannot exhaust memory.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The directory of drop-in files beside the main config file `main`:
/// `<dir of main>/conf.d`.
pub fn drop_in_dir(main: &Path) -> PathBuf {
    main.parent().unwrap_or(Path::new("")).join("conf.d")
}

/// The drop-in files of the config `main`: the `*.toml` files of [`drop_in_dir`] (not
/// those whose name starts with a dot, as editors' and tools' temporary files do),
/// in byte order of their names. No directory: none. A directory that cannot be read is
/// a problem, as a message.
pub fn drop_ins(main: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = drop_in_dir(main);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read the drop-in directory: {e}")),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read the drop-in directory: {e}"))?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") || !bytes.ends_with(b".toml") {
            continue;
        }
        found.push(dir.join(name));
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

/// One file of the config and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Reads the main config file `main` and its drop-ins ([`drop_ins`]), main first. A file
/// that cannot be read is a diagnostic naming it; every file is tried.
pub fn read_set(main: &Path) -> Result<Vec<Source>, Diagnostics> {
    let whole_file = |file: &Path, message| Diagnostic {
        file: file.display().to_string(),
        location: None,
        message,
    };
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let paths = match drop_ins(main) {
        Ok(more) => std::iter::once(main.to_owned()).chain(more).collect(),
        Err(message) => {
            problems.push(whole_file(&drop_in_dir(main), message));
            vec![main.to_owned()]
        }
    };
    for path in paths {
        match read(&path) {
            Ok(text) => sources.push(Source { path, text }),
            Err(message) => problems.push(whole_file(&path, message)),
        }
    }
    if problems.is_empty() {
        Ok(sources)
    } else {
        Err(problems.into())
    }
}

/// Reads and checks the config: the file at `path` and its drop-ins (`conf.d/*.toml`
/// beside it). Messages name the files as `path` is written.
pub fn load(path: impl AsRef<Path>) -> Result<Config, Diagnostics> {
    parse_set(&read_set(path.as_ref())?)
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

/// Checks the text of one config file without drop-ins; `path` is only used in messages.
pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Config, Diagnostics> {
    parse_sources(&[(path.as_ref(), text)])
}

/// Checks a main config file and its drop-ins (in the order given, main first) as one
/// config: services from every file, names and VIPs unique across them. Diagnostics
/// come file by file, each in file order.
pub fn parse_set(sources: &[Source]) -> Result<Config, Diagnostics> {
    let pairs: Vec<(&Path, &str)> = sources
        .iter()
        .map(|s| (s.path.as_path(), s.text.as_str()))
        .collect();
    parse_sources(&pairs)
}

fn parse_sources(sources: &[(&Path, &str)]) -> Result<Config, Diagnostics> {
    let mut rs: Vec<error::Reporter<'_>> = sources
        .iter()
        .map(|(path, text)| error::Reporter::new(path.display().to_string(), text))
        .collect();
    let docs: Vec<_> = sources
        .iter()
        .zip(rs.iter_mut())
        .map(|((_, text), r)| raw::parse_document(text, r))
        .collect();
    let roots: Vec<_> = docs
        .iter()
        .map(|d| d.as_ref().map(raw::Table::root))
        .collect();
    let config = validate::config_set(&roots, &mut rs);
    let all: Vec<Diagnostic> = rs
        .into_iter()
        .filter_map(error::Reporter::finish)
        .flatten()
        .collect();
    if all.is_empty() {
        Ok(config)
    } else {
        Err(all.into())
    }
}

#[cfg(test)]
mod dataplane_tests;
#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod drop_in_tests;
#[cfg(test)]
mod syn_rto_tests;
#[cfg(test)]
mod tests;
