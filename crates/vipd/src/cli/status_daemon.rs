//! `vipd status` with a daemon running: its view as text. Per service a header line, then
//! one row per backend with state, effective/config weight, IPVS connection counts (for
//! UDP: flow entries), UDP datagrams sent/replies seen, quarantines and the latest
//! outcomes, newest first.

use std::time::SystemTime;

use vipd::{
    daemon::view::{BackendView, DaemonView, RecentOutcome, ServiceView},
    dns::NameView,
};

/// Recent outcomes shown per backend; the rest are counted.
const RECENT_SHOWN: usize = 4;

const N: usize = 10;

const COLUMNS: [&str; N] = [
    "Backend",
    "State",
    "Weight",
    "ActiveConn",
    "InActConn",
    "UdpSent/Replies",
    "Quarantines",
    "QuarLeft",
    "Fails",
    "Recent (newest first)",
];
/// Columns aligned right (numbers); the others left.
const RIGHT: [bool; N] = [
    false, false, true, true, true, true, true, true, true, false,
];

/// A duration for people: `340ms`, `2.5s`, `42s`, `5m03s`, `2h07m`, `3d04h`.
fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{}s", s, ms % 1000 / 100),
        10_000..60_000 => format!("{s}s"),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn recent(list: &[RecentOutcome]) -> String {
    let mut sorted: Vec<&RecentOutcome> = list.iter().collect();
    sorted.sort_by_key(|r| r.ago_ms);
    let mut parts: Vec<String> = sorted
        .iter()
        .take(RECENT_SHOWN)
        .map(|r| format!("{} ({} ago)", r.outcome, human_ms(r.ago_ms)))
        .collect();
    if sorted.len() > RECENT_SHOWN {
        parts.push(format!("+{} more", sorted.len() - RECENT_SHOWN));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `no_counts`: the data plane (XDP, socket) keeps no connection counts, shown as `-`.
fn row(b: &BackendView, no_counts: bool) -> [String; N] {
    let o = &b.outcomes;
    let conns = |n: u32| {
        if no_counts {
            "-".to_owned()
        } else {
            n.to_string()
        }
    };
    [
        b.addr.clone(),
        if b.drained {
            format!("{}, drained", b.state)
        } else {
            b.state.clone()
        },
        format!("{}/{}", b.weight, b.config_weight),
        conns(b.active_conns),
        conns(b.inactive_conns),
        if o.udp_sent == 0 && o.udp_replies == 0 {
            "-".to_owned()
        } else {
            format!("{}/{}", o.udp_sent, o.udp_replies)
        },
        b.quarantines.to_string(),
        b.quarantine_left_ms
            .map_or_else(|| "-".to_owned(), human_ms),
        b.consecutive_failures.to_string(),
        recent(&b.recent),
    ]
}

fn line(cells: &[String; N], widths: &[usize; N]) -> String {
    let mut out = String::new();
    for ((cell, w), right) in cells.iter().zip(widths).zip(RIGHT) {
        out.push_str("  ");
        if right {
            out.push_str(&format!("{cell:>w$}"));
        } else {
            out.push_str(&format!("{cell:<w$}"));
        }
    }
    out.trim_end().to_owned() + "\n"
}

/// The daemon's view as text; `now` ages the timestamps.
pub fn render(view: &DaemonView, now: SystemTime) -> String {
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // 0: not known (a daemon that did not say).
    let ago = |unix_ms: u64| match unix_ms {
        0 => "?".to_owned(),
        t => human_ms(now_ms.saturating_sub(t)),
    };
    let mut out = format!(
        "vipd {} (pid {}), up {}; config {}, loaded {} ago\n",
        view.version,
        view.pid,
        ago(view.started_unix_ms),
        view.config,
        ago(view.config_loaded_unix_ms),
    );
    let no_counts = matches!(view.dataplane.as_str(), "xdp" | "socket");
    if !view.dataplane.is_empty() {
        out.push_str(&format!("data plane: {}\n", view.dataplane));
    }
    if let Some(r) = &view.last_reload {
        out.push_str(&format!("last reload {} ago: ", ago(r.unix_ms)));
        if r.ok {
            let unit = match view.dataplane.as_str() {
                "xdp" => "XDP map writes",
                "socket" => "socket map writes",
                _ => "netlink writes",
            };
            out.push_str(&format!("ok, {} {unit}", r.netlink_writes));
        } else {
            out.push_str("rejected");
        }
        if !r.message.is_empty() {
            out.push_str(&format!(": {}", r.message));
        }
        out.push('\n');
    }
    let w = &view.watcher;
    out.push_str(&format!(
        "watcher: {}; lost events {}, unattributed {}, evicted {}, tracked connections {}\n",
        if w.mode.is_empty() { "?" } else { &w.mode },
        w.lost_events,
        w.unattributed,
        w.evicted,
        w.tracked_connections,
    ));
    if !w.hooks.is_empty() {
        out.push_str(&format!("hooks: {}\n", w.hooks));
    }
    if !view.sysctls.is_empty() {
        out.push_str(&format!("sysctls: {}\n", view.sysctls.join(" ")));
    }
    if view.services.is_empty() {
        out.push_str("\nno services configured\n");
        return out;
    }

    // One set of column widths for every service, so the tables line up.
    let header = COLUMNS.map(str::to_owned);
    let rows: Vec<Vec<[String; N]>> = view
        .services
        .iter()
        .map(|s| s.backends.iter().map(|b| row(b, no_counts)).collect())
        .collect();
    let mut widths = [0usize; N];
    for cells in rows.iter().flatten().chain([&header]) {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    for (s, rows) in view.services.iter().zip(&rows) {
        out.push('\n');
        let mut title = format!("{}  {}  {}", s.name, s.key, s.scheduler);
        if s.panic {
            title.push_str("  PANIC (every backend out: all kept in rotation)");
        }
        out.push_str(&title);
        out.push('\n');
        if rows.is_empty() {
            out.push_str("  (no backends)\n");
        } else {
            out.push_str(&line(&header, &widths));
            for cells in rows {
                out.push_str(&line(cells, &widths));
            }
        }
        if let Some(sticky) = sticky_line(s) {
            out.push_str(&sticky);
        }
        for n in view.dns.iter().filter(|n| n.service == s.name) {
            out.push_str(&dns_line(n, &ago, now_ms));
        }
    }
    out
}

/// `  sticky clients: 5 (198.18.1.2:8080 4, 198.18.1.3:8080 1)`: the clients a service's
/// persistence keeps on its backends, where the data plane counts them.
fn sticky_line(s: &ServiceView) -> Option<String> {
    let counted: Vec<(&str, u32)> = s
        .backends
        .iter()
        .filter_map(|b| Some((b.addr.as_str(), b.sticky_clients?)))
        .collect();
    if counted.is_empty() {
        return None;
    }
    let total: u32 = counted.iter().map(|(_, n)| n).sum();
    let each: Vec<String> = counted
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(a, n)| format!("{a} {n}"))
        .collect();
    Some(if each.is_empty() {
        "  sticky clients: 0\n".to_owned()
    } else {
        format!("  sticky clients: {total} ({})\n", each.join(", "))
    })
}

/// One DNS name of a service: its last result, answer, TTL and refresh times.
fn dns_line(n: &NameView, ago: &dyn Fn(u64) -> String, now_ms: u64) -> String {
    let result = n.result.as_deref().unwrap_or("pending");
    let mut text = if n.note.starts_with(result) {
        format!("  {} {}: {}", n.kind, n.name, n.note)
    } else {
        format!("  {} {}: {result}, {}", n.kind, n.name, n.note)
    };
    if !n.answer.is_empty() {
        text.push_str(&format!("; answer {}", n.answer.join(", ")));
    }
    if let Some(ttl) = n.ttl_s {
        text.push_str(&format!("; TTL {ttl}s"));
    }
    if let Some(last) = n.last_unix_ms {
        text.push_str(&format!("; resolved {} ago", ago(last)));
    }
    text.push_str(&format!(
        "; next in {}\n",
        human_ms(n.next_unix_ms.saturating_sub(now_ms))
    ));
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vipd::daemon::view::{OutcomeCounts, ReloadView, WatcherView};

    use super::*;

    fn view() -> DaemonView {
        let now = 1_000_000_000;
        DaemonView {
            pid: 4242,
            version: "0.1.0".into(),
            config: "/etc/vipd/vipd.toml".into(),
            started_unix_ms: now - 3_723_000,
            config_loaded_unix_ms: now - 303_000,
            dataplane: String::new(),
            last_reload: Some(ReloadView {
                unix_ms: now - 12_000,
                ok: false,
                message: "vipd.toml:3:1: unknown key".into(),
                netlink_writes: 0,
            }),
            sysctls: vec![
                "net.ipv4.vs.conntrack=1".into(),
                "net.ipv4.vs.expire_nodest_conn=1".into(),
            ],
            watcher: WatcherView {
                mode: "full".into(),
                hooks: "tp_btf: inet_sock_set_state; kprobe: ip_vs_conn_new".into(),
                lost_events: 0,
                unattributed: 2,
                evicted: 0,
                tracked_connections: 17,
            },
            services: vec![
                ServiceView {
                    name: "web".into(),
                    key: "198.18.0.10:80/tcp".into(),
                    scheduler: "wlc".into(),
                    panic: false,
                    backends: vec![
                        BackendView {
                            addr: "198.18.1.2:8080".into(),
                            state: "healthy".into(),
                            config_weight: 100,
                            weight: 100,
                            active_conns: 12,
                            inactive_conns: 340,
                            outcomes: OutcomeCounts {
                                established: 352,
                                ..OutcomeCounts::default()
                            },
                            recent: vec![RecentOutcome {
                                ago_ms: 2_500,
                                outcome: "established 0.4ms".into(),
                            }],
                            ..BackendView::default()
                        },
                        BackendView {
                            addr: "198.18.1.3:8080".into(),
                            state: "quarantined".into(),
                            config_weight: 100,
                            weight: 0,
                            inactive_conns: 3,
                            quarantines: 2,
                            quarantine_left_ms: Some(1_500),
                            consecutive_failures: 3,
                            recent: (0..6)
                                .map(|i| RecentOutcome {
                                    ago_ms: 120 + i * 100,
                                    outcome: if i == 1 {
                                        "syn-retransmit #2".into()
                                    } else {
                                        "refused".into()
                                    },
                                })
                                .collect(),
                            ..BackendView::default()
                        },
                    ],
                },
                ServiceView {
                    name: "db".into(),
                    key: "[fd00:18::1]:5432/tcp".into(),
                    scheduler: "sh".into(),
                    panic: true,
                    backends: vec![],
                },
            ],
            dns: vec![NameView {
                service: "db".into(),
                kind: "srv".into(),
                name: "_pg._tcp.db.lab".into(),
                result: Some("failed".into()),
                note: "failed (no answer within 2s): kept the last 1".into(),
                answer: vec!["[fd00:18:1::2]:5432 (weight 10)".into()],
                ttl_s: Some(30),
                last_unix_ms: Some(999_998_000),
                next_unix_ms: 1_000_004_000,
            }],
        }
    }

    #[test]
    fn table_at_a_glance() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000);
        let text = render(&view(), now);
        let expected = "\
vipd 0.1.0 (pid 4242), up 1h02m; config /etc/vipd/vipd.toml, loaded 5m03s ago
last reload 12s ago: rejected: vipd.toml:3:1: unknown key
watcher: full; lost events 0, unattributed 2, evicted 0, tracked connections 17
hooks: tp_btf: inet_sock_set_state; kprobe: ip_vs_conn_new
sysctls: net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_nodest_conn=1

web  198.18.0.10:80/tcp  wlc
  Backend          State         Weight  ActiveConn  InActConn  UdpSent/Replies  Quarantines  QuarLeft  Fails  Recent (newest first)
  198.18.1.2:8080  healthy      100/100          12        340                -            0         -      0  established 0.4ms (2.5s ago)
  198.18.1.3:8080  quarantined    0/100           0          3                -            2      1.5s      3  refused (120ms ago), syn-retransmit #2 (220ms ago), refused (320ms ago), refused (420ms ago), +2 more

db  [fd00:18::1]:5432/tcp  sh  PANIC (every backend out: all kept in rotation)
  (no backends)
  srv _pg._tcp.db.lab: failed (no answer within 2s): kept the last 1; answer [fd00:18:1::2]:5432 (weight 10); TTL 30s; resolved 2.0s ago; next in 4.0s
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn reload_ok_and_no_services() {
        let mut v = view();
        v.services.clear();
        v.watcher.hooks.clear();
        v.sysctls.clear();
        v.last_reload = Some(ReloadView {
            unix_ms: 999_999_000,
            ok: true,
            message: String::new(),
            netlink_writes: 3,
        });
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000);
        let text = render(&v, now);
        assert_eq!(
            text.lines().collect::<Vec<_>>()[1..],
            [
                "last reload 1.0s ago: ok, 3 netlink writes",
                "watcher: full; lost events 0, unattributed 2, evicted 0, tracked connections 17",
                "",
                "no services configured",
            ]
        );
    }

    /// `vipd status` of one service on `dataplane` after a reload that wrote `writes`:
    /// its lines, and the cells of backend 198.18.1.2:8080's row.
    fn render_plane(dataplane: &str, hooks: &str, writes: u64) -> (Vec<String>, Vec<String>) {
        let mut v = view();
        v.dataplane = dataplane.into();
        v.watcher.hooks = hooks.into();
        v.services.truncate(1);
        v.last_reload = Some(ReloadView {
            unix_ms: 999_999_000,
            ok: true,
            message: String::new(),
            netlink_writes: writes,
        });
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000);
        let lines: Vec<String> = render(&v, now).lines().map(str::to_owned).collect();
        let row = lines
            .iter()
            .find(|l| l.contains("198.18.1.2:8080"))
            .unwrap();
        let cells = row.split_whitespace().map(str::to_owned).collect();
        (lines, cells)
    }

    #[test]
    fn xdp_shows_its_data_plane_and_no_connection_counts() {
        let (lines, cells) = render_plane("xdp", "xdp: vipd_xdp_lb on eth1 (pinned link)", 65);
        assert_eq!(lines[1], "data plane: xdp");
        assert_eq!(lines[2], "last reload 1.0s ago: ok, 65 XDP map writes");
        assert_eq!(lines[4], "hooks: xdp: vipd_xdp_lb on eth1 (pinned link)");
        assert_eq!(
            &cells[..5],
            ["198.18.1.2:8080", "healthy", "100/100", "-", "-"]
        );
    }

    #[test]
    fn socket_shows_its_writes_and_no_connection_counts() {
        let (lines, cells) = render_plane("socket", "socket: connect", 2);
        assert_eq!(lines[1], "data plane: socket");
        assert_eq!(lines[2], "last reload 1.0s ago: ok, 2 socket map writes");
        assert_eq!(&cells[3..5], ["-", "-"]);
        assert!(
            !lines.iter().any(|l| l.contains("sticky")),
            "a service without persistence has no sticky clients"
        );
    }

    #[test]
    fn a_service_with_persistence_shows_its_sticky_clients() {
        let mut v = view();
        v.dataplane = "socket".into();
        let backends = &mut v.services[0].backends;
        backends[0].sticky_clients = Some(4);
        backends[1].sticky_clients = Some(1);
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000);
        let text = render(&v, now);
        assert!(
            text.contains("\n  sticky clients: 5 (198.18.1.2:8080 4, 198.18.1.3:8080 1)\n"),
            "{text}"
        );
        v.services[0].backends[0].sticky_clients = Some(0);
        v.services[0].backends[1].sticky_clients = Some(0);
        assert!(render(&v, now).contains("\n  sticky clients: 0\n"));
    }

    #[test]
    fn durations() {
        assert_eq!(human_ms(0), "0ms");
        assert_eq!(human_ms(999), "999ms");
        assert_eq!(human_ms(1_050), "1.0s");
        assert_eq!(human_ms(59_999), "59s");
        assert_eq!(human_ms(3_599_000), "59m59s");
        assert_eq!(human_ms(90_000_000), "1d01h");
    }
}
