//! Attaching the kernel programs: each socket hook in its cheapest form the kernel
//! offers (tp_btf, fentry), falling back hook by hook to the classic tracepoint or
//! kprobe, and a record of what was attached and why.

use std::fmt;

use aya::{
    programs::{BtfTracePoint, FEntry, KProbe, TracePoint},
    Ebpf,
};

use super::loader::WatcherError;
use crate::kernel::offsets::SockTracepoint;

/// Which form of the socket hooks to attach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavour {
    /// tp_btf and fentry where the kernel supports them, else the classic tracepoint
    /// or kprobe, hook by hook.
    #[default]
    Auto,
    /// tp_btf and fentry only: a kernel without them is an error.
    Btf,
    /// Classic tracepoints (record offsets from tracefs) and kprobes only.
    Classic,
}

impl std::str::FromStr for Flavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "btf" => Ok(Self::Btf),
            "classic" => Ok(Self::Classic),
            other => Err(format!(
                "unknown probe flavour {other:?}: expected auto, btf or classic"
            )),
        }
    }
}

/// The kind of kernel hook a program is attached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    TracePoint,
    BtfTracePoint,
    KProbe,
    FEntry,
    /// A cgroup `sock_ops` program.
    SockOps,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TracePoint => "tracepoint",
            Self::BtfTracePoint => "tp_btf",
            Self::KProbe => "kprobe",
            Self::FEntry => "fentry",
            Self::SockOps => "sock_ops",
        })
    }
}

/// One attached hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The kernel function or tracepoint (`inet_sock_set_state`, `tcp_connect`, ...).
    pub hook: &'static str,
    pub kind: HookKind,
    /// Why the cheaper form was not used, when this is a fallback.
    pub fallback: Option<String>,
}

/// A one-line summary, grouped by kind: `tp_btf: a, b; kprobe: c`.
pub fn summary(attached: &[Attachment]) -> String {
    let mut parts = Vec::new();
    for kind in [
        HookKind::BtfTracePoint,
        HookKind::FEntry,
        HookKind::TracePoint,
        HookKind::KProbe,
        HookKind::SockOps,
    ] {
        let mut hooks: Vec<&str> = attached
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.hook)
            .collect();
        hooks.dedup();
        if !hooks.is_empty() {
            parts.push(format!("{kind}: {}", hooks.join(", ")));
        }
    }
    parts.join("; ")
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, WatcherError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(WatcherError::Missing(name))?;
    p.try_into().map_err(|source| WatcherError::Program {
        program: name,
        source,
    })
}

fn prog_err(program: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> WatcherError {
    move |source| WatcherError::Program { program, source }
}

/// What the BTF form of a hook needs, or why it cannot be had.
pub struct BtfSupport<'a> {
    /// The kernel's BTF as aya reads it, for the attach targets; `Err` says why not.
    pub kernel: Result<&'a aya::Btf, String>,
    /// Whether the programs' socket offsets are known; `Err` says why not.
    pub sock: Result<(), String>,
}

/// Attaches a socket tracepoint: tp_btf if `flavour` allows and it works, else the
/// classic one (`classic`: its record offsets were read, or why not).
pub fn socket_tracepoint(
    ebpf: &mut Ebpf,
    which: SockTracepoint,
    flavour: Flavour,
    btf: &BtfSupport<'_>,
    classic: Result<(), String>,
) -> Result<Attachment, WatcherError> {
    let (cat, name) = which.category_and_name();
    let mut fallback = None;
    if flavour != Flavour::Classic {
        let tried = btf
            .kernel
            .clone()
            .and_then(|kernel| btf.sock.clone().map(|()| kernel))
            .and_then(|kernel| {
                let program = btf_program_name(which);
                let p: &mut BtfTracePoint = program_for(ebpf, program)?;
                p.load(name, kernel).map_err(|e| format!("loading: {e}"))?;
                p.attach().map_err(|e| format!("attaching: {e}"))?;
                Ok(())
            });
        match settle(tried, flavour, name, HookKind::BtfTracePoint)? {
            Ok(done) => return Ok(done),
            Err(why) => fallback = Some(why),
        }
    }
    classic.map_err(|why| WatcherError::Unsupported {
        hook: name,
        kind: "tracepoint",
        why: match &fallback {
            Some(f) => format!("{why}; {f}"),
            None => why,
        },
    })?;
    let p: &mut TracePoint = program(ebpf, name)?;
    p.load().map_err(prog_err(name))?;
    p.attach(cat, name).map_err(prog_err(name))?;
    Ok(attachment(name, HookKind::TracePoint, fallback))
}

/// Attaches the `tcp_connect` hook: fentry if `flavour` allows and it works, else a
/// kprobe.
pub fn tcp_connect(
    ebpf: &mut Ebpf,
    flavour: Flavour,
    btf: &BtfSupport<'_>,
) -> Result<Attachment, WatcherError> {
    const NAME: &str = "tcp_connect";
    let mut fallback = None;
    if flavour != Flavour::Classic {
        let tried = btf.kernel.clone().and_then(|kernel| {
            let p: &mut FEntry = program_for(ebpf, "tcp_connect_fentry")?;
            p.load(NAME, kernel).map_err(|e| format!("loading: {e}"))?;
            p.attach().map_err(|e| format!("attaching: {e}"))?;
            Ok(())
        });
        match settle(tried, flavour, NAME, HookKind::FEntry)? {
            Ok(done) => return Ok(done),
            Err(why) => fallback = Some(why),
        }
    }
    kprobe(ebpf, NAME, "kernel").map_err(|e| match (&fallback, e) {
        (Some(f), WatcherError::NoSymbol { symbol, why, .. }) => WatcherError::Unsupported {
            hook: symbol,
            kind: "kprobe",
            why: format!("{why}; {f}"),
        },
        (_, e) => e,
    })?;
    Ok(attachment(NAME, HookKind::KProbe, fallback))
}

/// The outcome of trying `hook` in its BTF form `kind`: attached; or, with
/// [`Flavour::Btf`], an error; else `Err(reason)` to fall back with.
fn settle(
    tried: Result<(), String>,
    flavour: Flavour,
    hook: &'static str,
    kind: HookKind,
) -> Result<Result<Attachment, String>, WatcherError> {
    match tried {
        Ok(()) => Ok(Ok(attachment(hook, kind, None))),
        Err(why) if flavour == Flavour::Btf => Err(WatcherError::Unsupported {
            hook,
            kind: if kind == HookKind::FEntry {
                "fentry"
            } else {
                "tp_btf"
            },
            why,
        }),
        Err(why) => Ok(Err(format!("{kind} unavailable: {why}"))),
    }
}

fn btf_program_name(which: SockTracepoint) -> &'static str {
    match which {
        SockTracepoint::SetState => "inet_sock_set_state_btf",
        SockTracepoint::Retransmit => "tcp_retransmit_skb_btf",
        SockTracepoint::ReceiveReset => "tcp_receive_reset_btf",
    }
}

/// [`program`] with the error as a string, for a try-then-fall-back chain.
fn program_for<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    program(ebpf, name).map_err(|e| e.to_string())
}

fn attachment(hook: &'static str, kind: HookKind, fallback: Option<String>) -> Attachment {
    Attachment {
        hook,
        kind,
        fallback,
    }
}

/// Loads kprobe program `name` and attaches it to the kernel function of that name.
pub fn kprobe(
    ebpf: &mut Ebpf,
    name: &'static str,
    module: &'static str,
) -> Result<Attachment, WatcherError> {
    kprobes(ebpf, name, module, &[(name, true)])?;
    Ok(attachment(name, HookKind::KProbe, None))
}

/// Loads kprobe `program` and attaches it to each of `symbols` (`required`: failing is
/// an error; else the symbol is skipped with a debug log). Returns what was attached.
pub fn kprobes(
    ebpf: &mut Ebpf,
    program_name: &'static str,
    module: &'static str,
    symbols: &[(&'static str, bool)],
) -> Result<Vec<Attachment>, WatcherError> {
    let p: &mut KProbe = program(ebpf, program_name)?;
    p.load().map_err(prog_err(program_name))?;
    let mut attached = Vec::new();
    for &(symbol, required) in symbols {
        match p.attach(symbol, 0) {
            Ok(_) => attached.push(attachment(symbol, HookKind::KProbe, None)),
            Err(e) if required => {
                return Err(WatcherError::NoSymbol {
                    symbol,
                    module,
                    why: e.to_string(),
                })
            }
            Err(e) => tracing::debug!("kprobe {symbol} not attached: {e}"),
        }
    }
    Ok(attached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_parses_and_names_the_choices_on_error() {
        assert_eq!("auto".parse::<Flavour>(), Ok(Flavour::Auto));
        assert_eq!("btf".parse::<Flavour>(), Ok(Flavour::Btf));
        assert_eq!("classic".parse::<Flavour>(), Ok(Flavour::Classic));
        let e = "fast".parse::<Flavour>().unwrap_err();
        assert!(
            e.contains("\"fast\"") && e.contains("auto, btf or classic"),
            "{e}"
        );
    }

    #[test]
    fn summary_groups_hooks_by_kind_cheapest_first() {
        let a = |hook, kind| attachment(hook, kind, None);
        let s = summary(&[
            a("inet_sock_set_state", HookKind::BtfTracePoint),
            a("tcp_connect", HookKind::FEntry),
            a("ip_vs_conn_new", HookKind::KProbe),
            a("tcp_receive_reset", HookKind::TracePoint),
            a("tcp_retransmit_skb", HookKind::BtfTracePoint),
        ]);
        assert_eq!(
            s,
            "tp_btf: inet_sock_set_state, tcp_retransmit_skb; fentry: tcp_connect; \
             tracepoint: tcp_receive_reset; kprobe: ip_vs_conn_new"
        );
        assert_eq!(summary(&[]), "");
    }
}
