//! A service's health machine: every backend's state plus the rules that look at all of
//! them (the ejection limit, the never-zero rule, panic) and the effective weights.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::time::Instant;

use super::{
    backend::{step_at, Backend, Phase, SLOW_START_STEPS},
    backoff::{backoff, jittered, Rng},
    persist, DestId, PersistedService, Policy, Signal, State, Transition,
};

/// A backend on probation whose probe result has not come after this long gets a new
/// [`Transition::ProbeWanted`].
pub const PROBE_REISSUE: Duration = Duration::from_secs(10);

/// What status shows of one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendHealthView {
    pub dest: DestId,
    pub state: State,
    pub config_weight: u32,
    /// The weight IPVS should have now (panic included).
    pub weight: u32,
    /// The three consecutive-failure counters added up.
    pub consecutive_failures: u32,
    pub consecutive_refusals: u32,
    pub consecutive_retransmits: u32,
    pub consecutive_check_failures: u32,
    /// Recent ejections: the backoff exponent (decays to 0 once healthy for
    /// `max_ejection`).
    pub ejections: u32,
    /// Every quarantine since the daemon started watching.
    pub quarantines: u32,
    /// Time left in quarantine.
    #[serde(rename = "quarantine_left_ms", serialize_with = "as_ms")]
    pub quarantine_left: Option<Duration>,
    /// Time since the last change of state; `None`: none seen yet.
    #[serde(rename = "since_change_ms", serialize_with = "as_ms")]
    pub since_change: Option<Duration>,
}

fn as_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// How many of `n` backends may be ejected at once: `floor(n * pct / 100)`, but at least
/// one when `n >= 2` and `pct > 0`, so small services can still eject one (with a plain
/// floor, as Envoy's outlier detection had it, a 2-backend service at 10 % never ejects).
pub fn ejection_allowance(n: usize, pct: u8) -> usize {
    let allowed = n * usize::from(pct) / 100;
    if n >= 2 && pct > 0 {
        allowed.max(1)
    } else {
        allowed
    }
}

/// The health of one service's backends.
#[derive(Debug, Clone)]
pub struct ServiceHealth {
    pub(super) policy: Policy,
    pub(super) backends: BTreeMap<DestId, Backend>,
    rng: Rng,
    panic: bool,
}

impl ServiceHealth {
    /// Every backend healthy. `backends`: each destination and its configured weight.
    pub fn new(policy: Policy, backends: &[(DestId, u32)], seed: u64) -> Self {
        let mut s = ServiceHealth {
            policy,
            backends: backends
                .iter()
                .map(|&(dest, weight)| (dest, Backend::new(dest, weight)))
                .collect(),
            rng: Rng::new(seed),
            panic: false,
        };
        s.panic = s.panic_condition();
        s
    }

    /// A reload: keeps the state of the backends still present (their weight may change),
    /// adds new ones healthy, forgets the ones removed. Returns the panic transition the
    /// change causes, if any. A backend waiting for a probe when `probe` is now off is
    /// re-admitted by the next tick.
    pub fn update(
        &mut self,
        policy: Policy,
        backends: &[(DestId, u32)],
        now: Instant,
    ) -> Vec<Transition> {
        self.policy = policy;
        let mut kept = BTreeMap::new();
        for &(dest, weight) in backends {
            let mut b = self
                .backends
                .remove(&dest)
                .unwrap_or_else(|| Backend::new(dest, weight));
            b.config_weight = weight;
            if !self.policy.probe && matches!(b.phase, Phase::Probing { .. }) {
                b.phase = Phase::Quarantined { until: now };
            }
            kept.insert(dest, b);
        }
        self.backends = kept;
        let mut out = Vec::new();
        self.settle_panic(&mut out);
        out
    }

    /// A healthy backend that just arrived (from DNS) ramps up like a re-admitted one:
    /// slow start from `now` (nothing with `slow_start = 0s`, or in any other state).
    pub fn start_slow(&mut self, now: Instant, dest: DestId) {
        let zero = self.policy.slow_start.is_zero();
        if let Some(b) = self.backends.get_mut(&dest) {
            if !zero && b.phase == Phase::Healthy {
                b.set(
                    Phase::SlowStart {
                        since: now,
                        step: 1,
                    },
                    now,
                );
            }
        }
    }

    /// A connection outcome or check result for `dest` at `now`. Timers due at `now` are
    /// handled first, as by [`tick`](Self::tick). An unknown `dest` is ignored.
    ///
    /// A success that can change nothing (its backend healthy, with no refusal or
    /// retransmission counted) returns at once: it is what nearly every connection
    /// reports, and the timers and the panic rule look at every backend of the service.
    /// Timers due then are the next [`tick`](Self::tick)'s.
    pub fn observe(&mut self, now: Instant, dest: DestId, signal: Signal) -> Vec<Transition> {
        let Some(b) = self.backends.get(&dest) else {
            return Vec::new();
        };
        if signal == Signal::Success && b.success_changes_nothing() {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.expire(now, &mut out);
        self.apply(now, dest, signal, &mut out);
        self.settle_panic(&mut out);
        out
    }

    /// Ends the quarantines that are over, re-asks for overdue probes, steps slow starts
    /// and decays ejection counts. Slow-start steps change [`weights`](Self::weights)
    /// without a transition: read the weights again after every tick.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        self.settle_panic(&mut out);
        out
    }

    /// When [`tick`](Self::tick) must run next; `None`: nothing pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.backends
            .values()
            .filter_map(|b| b.deadline(&self.policy))
            .min()
    }

    /// The weight IPVS should give each backend now. In panic every backend has its
    /// configured weight; a configured weight of 0 always stays 0.
    pub fn weights(&self, now: Instant) -> BTreeMap<DestId, u32> {
        self.backends
            .iter()
            .map(|(dest, b)| {
                let w = if self.panic {
                    b.config_weight
                } else {
                    b.weight(&self.policy, now)
                };
                (*dest, w)
            })
            .collect()
    }

    pub fn in_panic(&self) -> bool {
        self.panic
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The state of `dest`, if it is a backend of this service.
    pub fn state(&self, dest: &DestId) -> Option<State> {
        self.backends.get(dest).map(Backend::state)
    }

    /// Per backend, what status shows, in address order.
    pub fn views(&self, now: Instant) -> Vec<BackendHealthView> {
        let weights = self.weights(now);
        self.backends
            .values()
            .map(|b| BackendHealthView {
                dest: b.dest,
                state: b.state(),
                config_weight: b.config_weight,
                weight: weights.get(&b.dest).copied().unwrap_or(0),
                consecutive_failures: b.failures(),
                consecutive_refusals: b.refusals,
                consecutive_retransmits: b.retransmits,
                consecutive_check_failures: b.check_failures,
                ejections: b.ejections,
                quarantines: b.quarantines,
                quarantine_left: match b.phase {
                    Phase::Quarantined { until } => Some(until.saturating_duration_since(now)),
                    _ => None,
                },
                since_change: b.last_change.map(|t| now.saturating_duration_since(t)),
            })
            .collect()
    }

    /// The state to keep across a restart; times become wall-clock Unix milliseconds.
    pub fn to_persisted(&self, now: Instant, wall: SystemTime) -> PersistedService {
        persist::save(self.panic, self.backends.values(), now, wall)
    }

    /// The state saved by [`to_persisted`](Self::to_persisted) before a restart, for the
    /// backends still configured (others start healthy; saved ones no longer configured
    /// are ignored). A quarantined backend stays quarantined until the same moment; a
    /// slow start goes on from the same point; a backend that was waiting for its probe
    /// gets a new [`Transition::ProbeWanted`] at the next tick. Deadlines already past
    /// are handled by the next tick.
    pub fn from_persisted(
        policy: Policy,
        backends: &[(DestId, u32)],
        p: &PersistedService,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> Self {
        let mut s = ServiceHealth::new(policy, backends, seed);
        for saved in &p.backends {
            if let Some(b) = s.backends.get_mut(&saved.dest()) {
                persist::restore(b, saved, &s.policy, now, wall);
            }
        }
        s.panic = s.panic_condition();
        s
    }

    // -----------------------------------------------------------------------------------

    fn apply(&mut self, now: Instant, dest: DestId, signal: Signal, out: &mut Vec<Transition>) {
        let policy = &self.policy;
        let Some(b) = self.backends.get_mut(&dest) else {
            return;
        };
        b.count(signal);
        match b.phase {
            Phase::Healthy | Phase::Failing | Phase::SlowStart { .. } => {
                if signal.is_failure() {
                    if b.phase == Phase::Healthy {
                        b.clean_since = Some(now);
                    }
                    if b.over_threshold(policy) {
                        self.try_quarantine(now, dest, signal, out);
                    }
                } else if b.phase == Phase::Failing && !b.over_threshold(policy) {
                    b.set(Phase::Healthy, now);
                    b.clean_since = Some(now);
                }
            }
            // Traffic of connections made before the quarantine: counted, no more.
            Phase::Quarantined { .. } => {}
            Phase::Probing { reissue_at, passes } => match signal {
                Signal::CheckPassed => {
                    let passes = passes.saturating_add(1);
                    if passes >= policy.check_rise {
                        self.readmit(now, dest, out);
                    } else {
                        b.phase = Phase::Probing { reissue_at, passes };
                    }
                }
                Signal::CheckFailed => self.quarantine(now, dest, Signal::CheckFailed, out),
                _ => {}
            },
        }
    }

    /// Quarantines `dest` unless the ejection limit or the never-zero rule forbids it, in
    /// which case it is held in rotation as failing.
    fn try_quarantine(
        &mut self,
        now: Instant,
        dest: DestId,
        cause: Signal,
        out: &mut Vec<Transition>,
    ) {
        let Some(b) = self.backends.get(&dest) else {
            return;
        };
        if b.eligible() {
            let others_carry_weight = self
                .backends
                .values()
                .any(|o| o.dest != dest && o.carries_weight());
            let eligible = self.backends.values().filter(|o| o.eligible()).count();
            let ejected = self
                .backends
                .values()
                .filter(|o| o.eligible() && o.ejected())
                .count();
            let allowed = ejection_allowance(eligible, self.policy.max_ejection_percent);
            if !others_carry_weight || ejected >= allowed {
                let b = self.backends.get_mut(&dest).expect("looked up above");
                if b.phase != Phase::Failing {
                    b.set(Phase::Failing, now);
                    out.push(Transition::HeldInRotation { dest, cause });
                }
                return;
            }
        }
        self.quarantine(now, dest, cause, out);
    }

    /// Quarantines `dest` for its next backoff.
    fn quarantine(&mut self, now: Instant, dest: DestId, cause: Signal, out: &mut Vec<Transition>) {
        self.quarantine_for(now, dest, cause, None, out);
    }

    /// Quarantines `dest` for `duration`, or for its next backoff when `None`.
    pub(super) fn quarantine_for(
        &mut self,
        now: Instant,
        dest: DestId,
        cause: Signal,
        duration: Option<Duration>,
        out: &mut Vec<Transition>,
    ) {
        let Some(b) = self.backends.get_mut(&dest) else {
            return;
        };
        b.ejections = b.ejections.saturating_add(1);
        b.quarantines = b.quarantines.saturating_add(1);
        let duration = duration.unwrap_or_else(|| {
            jittered(
                backoff(&self.policy, b.ejections),
                self.policy.jitter_percent,
                &mut self.rng,
            )
        });
        b.set(
            Phase::Quarantined {
                until: now + duration,
            },
            now,
        );
        b.clean_since = None;
        out.push(Transition::Quarantined {
            dest,
            ejections: b.ejections,
            duration,
            cause,
        });
    }

    /// Back in rotation: slow start, or full weight at once when `slow_start` is zero.
    pub(super) fn readmit(&mut self, now: Instant, dest: DestId, out: &mut Vec<Transition>) {
        let Some(b) = self.backends.get_mut(&dest) else {
            return;
        };
        b.reset_counters();
        if self.policy.slow_start.is_zero() {
            b.set(Phase::Healthy, now);
            b.clean_since = Some(now);
        } else {
            b.set(
                Phase::SlowStart {
                    since: now,
                    step: 1,
                },
                now,
            );
        }
        out.push(Transition::Readmitted { dest });
    }

    /// Every timer due at `now`, backend by backend.
    fn expire(&mut self, now: Instant, out: &mut Vec<Transition>) {
        let due: Vec<DestId> = self
            .backends
            .values()
            .filter(|b| b.deadline(&self.policy).is_some_and(|d| d <= now))
            .map(|b| b.dest)
            .collect();
        for dest in due {
            let Some(b) = self.backends.get_mut(&dest) else {
                continue;
            };
            match b.phase {
                Phase::Quarantined { .. } if self.policy.probe => {
                    b.set(
                        Phase::Probing {
                            reissue_at: now + PROBE_REISSUE,
                            passes: 0,
                        },
                        now,
                    );
                    out.push(Transition::ProbeWanted { dest });
                }
                Phase::Quarantined { .. } => self.readmit(now, dest, out),
                Phase::Probing { passes, .. } => {
                    b.phase = Phase::Probing {
                        reissue_at: now + PROBE_REISSUE,
                        passes,
                    };
                    out.push(Transition::ProbeWanted { dest });
                }
                Phase::SlowStart { since, .. } => {
                    let step = step_at(since, self.policy.slow_start, now);
                    if step >= SLOW_START_STEPS {
                        let end = since + self.policy.slow_start;
                        b.set(Phase::Healthy, end.min(now));
                        b.clean_since = Some(end.min(now));
                        out.push(Transition::Recovered { dest });
                    } else {
                        b.phase = Phase::SlowStart { since, step };
                    }
                }
                Phase::Healthy => b.ejections = 0,
                Phase::Failing => {}
            }
        }
    }

    /// Panic when no backend with a configured weight is healthy or ramping up, or fewer
    /// than `panic_threshold` percent are. Never with no such backend at all.
    fn panic_condition(&self) -> bool {
        let eligible = self.backends.values().filter(|b| b.eligible()).count();
        let available = self.backends.values().filter(|b| b.available()).count();
        eligible > 0
            && (available == 0
                || available * 100 < usize::from(self.policy.panic_threshold) * eligible)
    }

    pub(super) fn settle_panic(&mut self, out: &mut Vec<Transition>) {
        let panic = self.panic_condition();
        if panic != self.panic {
            self.panic = panic;
            out.push(if panic {
                Transition::PanicEntered
            } else {
                Transition::PanicExited
            });
        }
    }
}
