//! The names being followed and what each last answered: when to ask again, and what a
//! result does to the name's backends. No I/O: results and time come in as arguments.

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use super::{Lookup, Outcome, Resolved};
use crate::config::{Config, DnsBackend, DnsSettings, Forwarding, OnEmpty, ServiceKey};

/// One followed name: a service's DNS backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameKey {
    pub service: String,
    pub backend: DnsBackend,
}

/// What the last resolution of a name said, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// Records: the set is the answer.
    Ok,
    /// No records of the type asked (NOERROR).
    Empty,
    NxDomain,
    /// Timeout, SERVFAIL, refused, no network: the last good set is kept.
    Failed,
}

impl ResultKind {
    pub const ALL: [ResultKind; 4] = [
        ResultKind::Ok,
        ResultKind::Empty,
        ResultKind::NxDomain,
        ResultKind::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Ok => "ok",
            ResultKind::Empty => "empty",
            ResultKind::NxDomain => "nxdomain",
            ResultKind::Failed => "failed",
        }
    }
}

/// The state of one name.
#[derive(Debug, Clone)]
pub struct NameState {
    pub lookup: Lookup,
    /// The backends the name gives now (the last good answer, or what a rule kept).
    pub current: Vec<Resolved>,
    /// Whether any answer came yet.
    pub answered: bool,
    pub last: Option<ResultKind>,
    /// What the last result did, in words (`"2 backends"`, `"kept 2 backends: timeout"`).
    pub note: String,
    /// The TTL of the last good answer.
    pub ttl: Option<Duration>,
    pub last_at: Option<Instant>,
    pub next: Instant,
    pub in_flight: bool,
    /// Failed or empty results in a row, for the retry backoff.
    pub misses: u32,
}

/// What a result changed: the name's backends, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: NameKey,
    pub before: Vec<Resolved>,
    pub after: Vec<Resolved>,
}

/// Every followed name.
#[derive(Debug, Default)]
pub struct Tracker {
    settings: DnsSettings,
    names: BTreeMap<NameKey, NameState>,
    /// Literal backends per service (for the rule that never empties a service).
    literal: BTreeMap<String, usize>,
    rng: u64,
}

/// The lookup a service's DNS backend needs: the families its forwarding can reach.
fn lookup_for(key: ServiceKey, forwarding: Forwarding, b: &DnsBackend) -> Lookup {
    let (v4, v6) = match (forwarding, key.family()) {
        (Forwarding::Tunnel(_), _) => (true, true),
        (_, crate::config::Family::Ipv4) => (true, false),
        (_, crate::config::Family::Ipv6) => (false, true),
    };
    Lookup {
        name: b.name.clone(),
        query: b.query,
        v4,
        v6,
    }
}

impl Tracker {
    pub fn new(seed: u64) -> Self {
        Tracker {
            rng: seed | 1,
            ..Tracker::default()
        }
    }

    /// Follows the DNS backends of `config`: new names are due now, names no longer
    /// configured are dropped, names still configured keep their answers and schedule.
    pub fn sync(&mut self, config: &Config, now: Instant) {
        self.settings = config.dns.clone();
        self.literal = config
            .services
            .iter()
            .map(|s| (s.name.clone(), s.backends.len()))
            .collect();
        let mut wanted = BTreeMap::new();
        for s in &config.services {
            for b in &s.dns {
                let key = NameKey {
                    service: s.name.clone(),
                    backend: b.clone(),
                };
                wanted.insert(key, lookup_for(s.key, s.forwarding, b));
            }
        }
        self.names
            .retain(|k, st| wanted.get(k).is_some_and(|l| *l == st.lookup));
        for (key, lookup) in wanted {
            self.names.entry(key).or_insert_with(|| NameState {
                lookup,
                current: Vec::new(),
                answered: false,
                last: None,
                note: "not resolved yet".into(),
                ttl: None,
                last_at: None,
                next: now,
                in_flight: false,
                misses: 0,
            });
        }
    }

    /// Starts the names not answered yet from `sets` (what they gave in the last run,
    /// from the record): those backends stand until a resolution says otherwise. A
    /// failed one keeps them, an answer replaces them, an empty one follows
    /// `on_empty`, as for any last good set.
    pub fn restore(&mut self, sets: &BTreeMap<NameKey, Vec<Resolved>>) {
        for (key, set) in sets.iter().filter(|(_, set)| !set.is_empty()) {
            let Some(st) = self.names.get_mut(key) else {
                continue;
            };
            if st.answered || !st.current.is_empty() {
                continue;
            }
            let n = set.len();
            st.current = set.clone();
            st.note = format!(
                "{n} backend{} from the last run, not resolved yet",
                if n == 1 { "" } else { "s" }
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn state(&self, key: &NameKey) -> Option<&NameState> {
        self.names.get(key)
    }

    pub fn names(&self) -> impl Iterator<Item = (&NameKey, &NameState)> {
        self.names.iter()
    }

    /// When the next name is due (none in flight counts).
    pub fn next_due(&self) -> Option<Instant> {
        self.names
            .values()
            .filter(|s| !s.in_flight)
            .map(|s| s.next)
            .min()
    }

    /// The names due at `now`, the longest overdue first, at most `limit`, marked in
    /// flight.
    pub fn take_due(&mut self, now: Instant, limit: usize) -> Vec<(NameKey, Lookup)> {
        if limit == 0 {
            return Vec::new();
        }
        let mut due: Vec<(Instant, &NameKey)> = self
            .names
            .iter()
            .filter(|(_, s)| !s.in_flight && s.next <= now)
            .map(|(k, s)| (s.next, k))
            .collect();
        due.sort();
        let keys: Vec<NameKey> = due
            .into_iter()
            .take(limit)
            .map(|(_, k)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let s = self.names.get_mut(&k)?;
                s.in_flight = true;
                Some((k, s.lookup.clone()))
            })
            .collect()
    }

    /// A uniform fraction in [0, 1) (xorshift).
    fn fraction(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next refresh after a good answer with `ttl`: the TTL bounded by min/max
    /// refresh (the base), less a random part so that names do not keep coming due
    /// together: uniform in the last 10% before the base, or, after a name's first
    /// answer, anywhere from the minimum to the base (names resolved together at start
    /// spread out at once). Never under the minimum: when the base is the minimum, up to
    /// 10% is added instead (never over the maximum).
    fn refresh_after(&mut self, ttl: Duration, first: bool) -> Duration {
        let (min, max) = (self.settings.min_refresh, self.settings.max_refresh);
        let base = ttl.clamp(min, max);
        let f = self.fraction();
        let lo = if first {
            min
        } else {
            base.mul_f64(0.9).max(min)
        };
        if lo < base {
            lo + (base - lo).mul_f64(f)
        } else {
            (base + base.mul_f64(0.1 * f)).min(max)
        }
    }

    /// The retry after `misses` bad results in a row: the minimum refresh, doubling,
    /// bounded by the maximum, with the same jitter.
    fn retry_after(&mut self, misses: u32) -> Duration {
        let (min, max) = (self.settings.min_refresh, self.settings.max_refresh);
        let base = min
            .saturating_mul(1 << misses.saturating_sub(1).min(16))
            .min(max);
        base.mul_f64(1.0 - 0.1 * self.fraction()).max(min)
    }

    /// Whether the service would keep a backend if `key`'s backends were gone.
    fn others_have_backends(&self, key: &NameKey) -> bool {
        self.literal.get(&key.service).copied().unwrap_or(0) > 0
            || self
                .names
                .iter()
                .any(|(k, s)| k != key && k.service == key.service && !s.current.is_empty())
    }

    /// A resolution of `key` finished at `now`. Returns the change of its backends, if
    /// any. Unknown keys (the name left the config meanwhile) are ignored.
    pub fn on_outcome(
        &mut self,
        key: &NameKey,
        outcome: Outcome,
        now: Instant,
    ) -> Option<(ResultKind, Option<Change>)> {
        let others = self.names.contains_key(key) && self.others_have_backends(key);
        let on_empty = self.settings.on_empty;
        let (misses, first) = {
            let st = self.names.get(key)?;
            (st.misses, !st.answered)
        };
        let (kind, new, note, ttl_or_retry) = match outcome {
            Outcome::Answer { mut backends, ttl } => {
                for b in &mut backends {
                    // An SRV weight of 0 means "rarely" in RFC 2782; in IPVS it would
                    // mean never.
                    b.weight = key.backend.weight.unwrap_or(b.weight.max(1));
                }
                backends.sort();
                backends.dedup_by_key(|b| b.addr);
                let n = backends.len();
                let note = format!("{n} backend{}", if n == 1 { "" } else { "s" });
                (ResultKind::Ok, Some(backends), note, Ok(ttl))
            }
            Outcome::Empty | Outcome::NxDomain => {
                let kind = if matches!(outcome, Outcome::Empty) {
                    ResultKind::Empty
                } else {
                    ResultKind::NxDomain
                };
                let current = self.names[key].current.len();
                let (new, note) = match on_empty {
                    _ if current == 0 => (None, format!("{}: no backends", kind.as_str())),
                    OnEmpty::Keep => (
                        None,
                        format!(
                            "{}: kept the last {current} (on_empty = \"keep\")",
                            kind.as_str()
                        ),
                    ),
                    OnEmpty::Remove if !others => (
                        None,
                        format!(
                            "{}: kept the last {current}: removing them would leave the service with no backend",
                            kind.as_str()
                        ),
                    ),
                    OnEmpty::Remove => (
                        Some(Vec::new()),
                        format!("{}: removed {current} (on_empty = \"remove\")", kind.as_str()),
                    ),
                };
                (kind, new, note, Err(misses + 1))
            }
            Outcome::Failed(why) => {
                let current = self.names[key].current.len();
                (
                    ResultKind::Failed,
                    None,
                    format!("failed ({why}): kept the last {current}"),
                    Err(misses + 1),
                )
            }
        };
        let after = match ttl_or_retry {
            Ok(ttl) => self.refresh_after(ttl, first),
            Err(m) => self.retry_after(m),
        };
        let st = self.names.get_mut(key)?;
        st.in_flight = false;
        st.last = Some(kind);
        st.last_at = Some(now);
        st.next = now + after;
        st.note = note;
        match ttl_or_retry {
            Ok(ttl) => {
                st.ttl = Some(ttl);
                st.misses = 0;
                st.answered = true;
            }
            Err(m) => st.misses = m,
        }
        let change = new.filter(|n| *n != st.current).map(|after| {
            let before = std::mem::replace(&mut st.current, after.clone());
            Change {
                key: key.clone(),
                before,
                after,
            }
        });
        Some((kind, change))
    }

    /// The backends each name gives now.
    pub fn sets(&self) -> BTreeMap<NameKey, Vec<Resolved>> {
        self.names
            .iter()
            .filter(|(_, s)| !s.current.is_empty())
            .map(|(k, s)| (k.clone(), s.current.clone()))
            .collect()
    }
}
