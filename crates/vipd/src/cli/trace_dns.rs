//! `vipd trace`'s notes of DNS backend set changes: the running daemon resolves the
//! names, so the trace asks it for its status once a second and prints each name whose
//! backends changed (and every name's set once, at the start).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use vipd::{daemon::control, dns::NameView};

/// How often the daemon is asked.
const EVERY: Duration = Duration::from_secs(1);
/// How long it has to answer.
const TIMEOUT: Duration = Duration::from_millis(500);

/// (service, kind, name).
type Key = (String, String, String);

/// The sets last seen, to print only what changed.
#[derive(Default)]
pub struct SetNotes {
    last: BTreeMap<Key, Vec<String>>,
}

/// One change of a name's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetChange {
    pub service: String,
    /// `dns` (A/AAAA) or `srv`.
    pub kind: String,
    pub name: String,
    /// The backends now (`addr (weight w)`), and those that came and went.
    pub backends: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// What the last resolution did, as status says it.
    pub note: String,
}

impl SetNotes {
    /// The names of `views` (of `service` only, if given) whose backends differ from
    /// what the last call saw; every name on the first call.
    pub fn changes(&mut self, views: &[NameView], service: Option<&str>) -> Vec<SetChange> {
        let mut out = Vec::new();
        for v in views
            .iter()
            .filter(|v| service.is_none_or(|s| s == v.service))
        {
            let key = (v.service.clone(), v.kind.clone(), v.name.clone());
            let before = self.last.get(&key);
            if before == Some(&v.answer) {
                continue;
            }
            let before = before.cloned().unwrap_or_default();
            out.push(SetChange {
                service: v.service.clone(),
                kind: v.kind.clone(),
                name: v.name.clone(),
                added: v
                    .answer
                    .iter()
                    .filter(|a| !before.contains(a))
                    .cloned()
                    .collect(),
                removed: before
                    .iter()
                    .filter(|a| !v.answer.contains(a))
                    .cloned()
                    .collect(),
                backends: v.answer.clone(),
                note: v.note.clone(),
            });
            self.last.insert(key, v.answer.clone());
        }
        out
    }
}

impl SetChange {
    /// One line of text: `web  dns web.lab: 2 backends: a, b (+a -c): <note>`.
    pub fn text(&self) -> String {
        let n = self.backends.len();
        let mut line = format!(
            "{}  {} {}: {n} backend{}",
            self.service,
            self.kind,
            self.name,
            if n == 1 { "" } else { "s" }
        );
        if n > 0 {
            line.push_str(": ");
            line.push_str(&self.backends.join(", "));
        }
        let delta: Vec<String> = self
            .added
            .iter()
            .map(|a| format!("+{a}"))
            .chain(self.removed.iter().map(|a| format!("-{a}")))
            .collect();
        if !delta.is_empty() {
            line.push_str(&format!(" ({})", delta.join(" ")));
        }
        line.push_str(&format!(" [{}]", self.note));
        line
    }
}

/// Asks the daemon at `runtime_dir` once a second until `stop`, printing the changes
/// (`time` formats the wall clock as the trace's other lines do). Says once on stderr
/// when no daemon answers.
pub fn follow(
    runtime_dir: PathBuf,
    service: Option<String>,
    json: bool,
    stop: &AtomicBool,
    time: impl Fn(SystemTime) -> String,
) {
    let socket = control::socket_path(&runtime_dir);
    let mut notes = SetNotes::default();
    let mut said = false;
    while !stop.load(Ordering::Relaxed) {
        match control::query_status(&socket, TIMEOUT) {
            Ok(view) => {
                for c in notes.changes(&view.dns, service.as_deref()) {
                    let at = time(SystemTime::now());
                    if json {
                        let line = serde_json::json!({
                            "time": at, "event": "dns_set", "service": c.service,
                            "kind": c.kind, "name": c.name, "backends": c.backends,
                            "added": c.added, "removed": c.removed, "note": c.note,
                        });
                        println!("{line}");
                    } else {
                        println!("{at}  {}", c.text());
                    }
                }
            }
            Err(e) if !said => {
                said = true;
                eprintln!(
                    "vipd trace: no daemon answers on {} ({e}): DNS backend set changes are not shown",
                    socket.display()
                );
            }
            Err(_) => {}
        }
        std::thread::sleep(EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(service: &str, answer: &[&str], note: &str) -> NameView {
        NameView {
            service: service.into(),
            kind: "dns".into(),
            name: "web.lab".into(),
            note: note.into(),
            answer: answer.iter().map(|a| a.to_string()).collect(),
            ..NameView::default()
        }
    }

    #[test]
    fn the_first_sets_then_only_changes_are_noted() {
        let mut n = SetNotes::default();
        let first = n.changes(&[view("web", &["a", "b"], "2 backends")], None);
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].text(),
            "web  dns web.lab: 2 backends: a, b (+a +b) [2 backends]"
        );
        assert!(n
            .changes(&[view("web", &["a", "b"], "2 backends")], None)
            .is_empty());
        let c = n.changes(&[view("web", &["a", "c"], "2 backends")], None);
        assert_eq!(
            c[0].text(),
            "web  dns web.lab: 2 backends: a, c (+c -b) [2 backends]"
        );
        let c = n.changes(&[view("web", &[], "nxdomain: removed 2")], None);
        assert_eq!(
            c[0].text(),
            "web  dns web.lab: 0 backends (-a -c) [nxdomain: removed 2]"
        );
    }

    #[test]
    fn other_services_are_left_out_when_one_is_traced() {
        let mut n = SetNotes::default();
        let views = [
            view("web", &["a"], "1 backend"),
            view("api", &["b"], "1 backend"),
        ];
        let c = n.changes(&views, Some("api"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].service, "api");
    }
}
