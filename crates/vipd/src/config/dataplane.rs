//! `dataplane = "ipvs" | "xdp" | "socket"` and the `[xdp]` table (`[socket]` is read
//! by [`super::socket`]). With the XDP data plane every
//! option that only IPVS has is reported where it is written, saying why; the XDP
//! scheduler is `"maglev"` (weighted Maglev consistent hashing in the XDP program),
//! which IPVS does not know (its Maglev scheduler is `"mh"`).

use super::{
    error::Reporter,
    model::{Dataplane, Scheduler, XdpSettings},
    raw::{Field, Table},
    validate::interface_name_problem,
};

const XDP_KEYS: &[&str] = &["interface", "pin_maps"];

/// The XDP scheduler's name.
pub(crate) const MAGLEV: &str = "maglev";

/// Reads `dataplane` and `[xdp]` at the top level.
pub(crate) fn dataplane(root: Table<'_>, r: &mut Reporter<'_>) -> Dataplane {
    let kind = match root.get("dataplane") {
        None => Some("ipvs"),
        Some(f) => f
            .keyword(
                "dataplane",
                Dataplane::NAMES,
                |n| Dataplane::NAMES.iter().copied().find(|k| *k == n),
                r,
            )
            .map(|s| s.value),
    };
    if let Some(f) = root.get("socket").filter(|_| kind != Some("socket")) {
        r.error(f.at, "[socket] is only used with dataplane = \"socket\"");
    }
    let table = root.get("xdp");
    if kind == Some("socket") {
        if let Some(f) = table {
            r.error(f.at, "[xdp] is only used with dataplane = \"xdp\" (this config uses the socket data plane)");
        }
        let t = match root.get("socket") {
            None => None,
            Some(f) => match f.table("in [socket]", r) {
                Some(t) => Some(t),
                None => return Dataplane::Ipvs,
            },
        };
        return super::socket::settings(t, r).map_or(Dataplane::Ipvs, Dataplane::Socket);
    }
    match (kind, table) {
        (Some("xdp"), None) => {
            let at = root.get("dataplane").and_then(|f| f.at);
            r.error(
                at,
                "dataplane = \"xdp\" needs an [xdp] table with `interface` (the balancer's interface)",
            );
            Dataplane::Ipvs
        }
        (Some("xdp"), Some(f)) => match f.table("in [xdp]", r).and_then(|t| xdp(t, r)) {
            Some(x) => Dataplane::Xdp(x),
            None => Dataplane::Ipvs,
        },
        (Some(_), Some(f)) => {
            r.error(
                f.at,
                "[xdp] is only used with dataplane = \"xdp\" (this config uses IPVS)",
            );
            Dataplane::Ipvs
        }
        _ => Dataplane::Ipvs,
    }
}

fn xdp(t: Table<'_>, r: &mut Reporter<'_>) -> Option<XdpSettings> {
    t.deny_unknown(XDP_KEYS, r);
    let interface = match t.get("interface") {
        None => {
            r.error(t.at, "[xdp] needs `interface`: the balancer's interface");
            None
        }
        Some(f) => f
            .str(r)
            .and_then(|s| match interface_name_problem(s.value) {
                None => Some(s.value.to_owned()),
                Some(why) => {
                    r.error(s.at, format!("invalid interface {:?}: {why}", s.value));
                    None
                }
            }),
    };
    let pin_maps = match t.get("pin_maps") {
        None => Some(true),
        Some(f) => f.bool(r).map(|b| b.value),
    };
    Some(XdpSettings {
        interface: interface?,
        pin_maps: pin_maps?,
    })
}

/// `scheduler = "maglev"`: the XDP scheduler. `None` when `f` is some other name.
pub(crate) fn maglev(f: Field<'_>, xdp: bool, r: &mut Reporter<'_>) -> Option<Option<Scheduler>> {
    let s = f.str(r)?;
    if s.value != MAGLEV {
        return None;
    }
    if xdp {
        Some(Some(Scheduler::MaglevHashing))
    } else {
        r.error(
            s.at,
            "scheduler \"maglev\" is the XDP data plane's (dataplane = \"xdp\"); IPVS's Maglev hashing is \"mh\"",
        );
        Some(None)
    }
}

/// With the XDP data plane: reports each option of a `[[service]]` table that only IPVS
/// has, at the option.
pub(crate) fn xdp_restrictions(t: Table<'_>, r: &mut Reporter<'_>) {
    only_ipvs(
        t.get("fwmark"),
        "the XDP data plane balances VIP:port services only",
        r,
    );
    only_ipvs(
        t.get("persistence"),
        "with the XDP data plane a flow stays on its backend through the flow table, and there are no client-persistence templates",
        r,
    );
    only_ipvs(
        t.get("flags"),
        "they are options of IPVS schedulers; the XDP data plane always hashes the client's address and port (Maglev)",
        r,
    );
    only_ipvs(
        t.get("tunnel"),
        "the XDP data plane rewrites addresses (NAT) and does not encapsulate",
        r,
    );
    if let Some(f) = t.get("forwarding") {
        if f.item_str() != Some("masq") {
            r.error(
                f.at,
                "the XDP data plane forwards by rewriting addresses only: `forwarding` must be \"masq\" (or left out)",
            );
        }
    }
    if let Some(f) = t.get("scheduler") {
        match f.item_str() {
            Some(MAGLEV) => {}
            Some(other) => r.error(
                f.at,
                format!(
                    "scheduler {other:?} is an IPVS scheduler; the XDP data plane's is \"maglev\" (weighted consistent hashing, the default)"
                ),
            ),
            None => {}
        }
    }
    if let Some(f) = t.get("udp_stale_flows") {
        if f.item_str() == Some("keep") {
            r.error(
                f.at,
                "udp_stale_flows = \"keep\" needs IPVS: the XDP data plane moves the flows of a removed backend at their next packet (\"expire\")",
            );
        }
    }
    thresholds_need_ipvs(
        t,
        "the XDP data plane keeps no connection counts per backend",
        r,
    );
}

/// Reports an option only IPVS has, at the option, saying `why`.
pub(crate) fn only_ipvs(f: Option<Field<'_>>, why: &str, r: &mut Reporter<'_>) {
    if let Some(f) = f {
        r.error(f.at, format!("`{}` needs IPVS: {why}", f.key));
    }
}

/// Reports the connection thresholds of every `[[service.backend]]` of `t`.
pub(crate) fn thresholds_need_ipvs(t: Table<'_>, why: &str, r: &mut Reporter<'_>) {
    let backends = t
        .get("backend")
        .and_then(|f| f.tables_quiet())
        .unwrap_or_default();
    for b in backends {
        for key in ["upper_threshold", "lower_threshold"] {
            only_ipvs(b.get(key), why, r);
        }
    }
}
