//! The tracker's rules and the resolver task, with a fake resolver on paused time.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::*;

fn config(text: &str) -> Config {
    crate::config::parse("vipd.toml", text).unwrap_or_else(|d| panic!("{d}"))
}

const ONE_NAME: &str = r#"
[dns]
min_refresh = "2s"
max_refresh = "60s"

[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ dns = "web.lab", port = 8080 }]
"#;

fn r(addr: &str) -> Resolved {
    Resolved {
        addr: addr.parse().unwrap(),
        weight: 1,
    }
}

fn answer(addrs: &[&str], ttl: u64) -> Outcome {
    Outcome::Answer {
        backends: addrs.iter().map(|a| r(a)).collect(),
        ttl: Duration::from_secs(ttl),
    }
}

/// A tracker (jitter seed `seed`) following `text`'s names, and the time it started.
fn tracker(text: &str, seed: u64) -> (Tracker, Instant) {
    let now = Instant::now();
    let mut t = Tracker::new(seed);
    t.sync(&config(text), now);
    (t, now)
}

fn only_key(t: &Tracker) -> NameKey {
    t.names().next().unwrap().0.clone()
}

#[test]
fn a_new_name_is_due_now_and_asks_for_the_services_family() {
    let (mut t, now) = tracker(ONE_NAME, 1);
    assert_eq!(t.next_due(), Some(now));
    let due = t.take_due(now, 10);
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].1,
        Lookup {
            name: "web.lab".into(),
            query: crate::config::DnsQuery::Host { port: 8080 },
            v4: true,
            v6: false,
        }
    );
    assert_eq!(t.next_due(), None, "in flight");
    assert!(t.take_due(now, 10).is_empty());
}

#[test]
fn the_longest_overdue_names_go_first() {
    let text = r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ dns = "a.lab", port = 80 }, { dns = "b.lab", port = 80 }, { dns = "c.lab", port = 80 }]
"#;
    let (mut t, now) = tracker(text, 1);
    // a.lab answers and comes due again; b.lab and c.lab have waited longer.
    let a = t.take_due(now, 1).remove(0).0;
    assert_eq!(a.backend.name, "a.lab");
    t.on_outcome(&a, Outcome::Failed("x".into()), now);
    let later = now + Duration::from_secs(60);
    let names: Vec<String> = t
        .take_due(later, 2)
        .into_iter()
        .map(|(k, _)| k.backend.name)
        .collect();
    assert_eq!(names, ["b.lab", "c.lab"]);
}

#[test]
fn refresh_follows_the_ttl_within_min_and_max_with_jitter() {
    let (mut t, now) = tracker(ONE_NAME, 7);
    let key = only_key(&t);
    // The first answer's refresh is anywhere from the minimum to the TTL; then in the
    // last 10% of it, or up to 10% over where the TTL is under the minimum.
    for (ttl, lo, hi) in [
        (30, 2.0, 30.0),
        (30, 27.0, 30.0),
        (1, 2.0, 2.2),
        (3600, 54.0, 60.0),
    ] {
        t.take_due(now, 1);
        t.on_outcome(&key, answer(&["198.18.1.2:8080"], ttl), now);
        let after = (t.next_due().unwrap() - now).as_secs_f64();
        assert!(
            (lo..=hi).contains(&after),
            "ttl {ttl}: next refresh after {after}s, want {lo}..={hi}"
        );
    }
}

#[test]
fn jitter_spreads_names_with_the_same_ttl() {
    let now = Instant::now();
    let mut text = String::from("[dns]\nmin_refresh = \"1s\"\n");
    for i in 0..100 {
        text.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"198.18.0.{}:80\"\nbackend = [{{ dns = \"s{i}.lab\", port = 80 }}]\n",
            i + 1
        ));
    }
    let mut t = Tracker::new(3);
    t.sync(&config(&text), now);
    let due = t.take_due(now, 1000);
    assert_eq!(due.len(), 100);
    for (key, _) in &due {
        t.on_outcome(key, answer(&["198.19.0.1:80"], 30), now);
    }
    let mut times: Vec<Duration> = t.names().map(|(_, s)| s.next - now).collect();
    times.sort();
    times.dedup();
    assert!(times.len() > 90, "{} distinct refresh times", times.len());
    assert!(times[0] >= Duration::from_secs(1) && times[99] <= Duration::from_secs(30));
    assert!(
        times[99] - times[0] > Duration::from_secs(20),
        "spread over the TTL: {:?}..{:?}",
        times[0],
        times[99]
    );
}

#[test]
fn a_failure_keeps_the_last_good_set_and_retries_with_backoff() {
    let (mut t, now) = tracker(ONE_NAME, 1);
    let key = only_key(&t);
    t.take_due(now, 1);
    let (kind, change) = t
        .on_outcome(
            &key,
            answer(&["198.18.1.2:8080", "198.18.1.3:8080"], 30),
            now,
        )
        .unwrap();
    assert_eq!(kind, ResultKind::Ok);
    assert_eq!(change.unwrap().after.len(), 2);
    let mut retries = Vec::new();
    for _ in 0..4 {
        t.take_due(now, 1);
        let (kind, change) = t
            .on_outcome(&key, Outcome::Failed("SERVFAIL".into()), now)
            .unwrap();
        assert_eq!(kind, ResultKind::Failed);
        assert_eq!(change, None, "a failure changes nothing");
        retries.push((t.next_due().unwrap() - now).as_secs_f64());
    }
    assert_eq!(t.sets()[&key].len(), 2);
    // 2s, 4s, 8s, 16s less up to 10%.
    for (got, want) in retries.iter().zip([2.0, 4.0, 8.0, 16.0]) {
        assert!(
            *got <= want && *got >= (want * 0.9f64).max(2.0),
            "{retries:?}"
        );
    }
    let (_, s) = t.names().next().unwrap();
    assert_eq!(s.note, "failed (SERVFAIL): kept the last 2");
}

#[test]
fn nxdomain_keeps_the_set_by_default() {
    let (mut t, now) = tracker(ONE_NAME, 1);
    let key = only_key(&t);
    t.on_outcome(&key, answer(&["198.18.1.2:8080"], 30), now);
    let (kind, change) = t.on_outcome(&key, Outcome::NxDomain, now).unwrap();
    assert_eq!((kind, change), (ResultKind::NxDomain, None));
    assert_eq!(t.sets()[&key], [r("198.18.1.2:8080")]);
    let (_, s) = t.names().next().unwrap();
    assert_eq!(s.note, "nxdomain: kept the last 1 (on_empty = \"keep\")");
}

#[test]
fn remove_drops_a_names_backends_but_never_the_services_last() {
    let text = r#"
[dns]
on_empty = "remove"

[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ dns = "a.lab", port = 80 }, { dns = "b.lab", port = 80 }]
"#;
    let (mut t, now) = tracker(text, 1);
    let keys: Vec<NameKey> = t.names().map(|(k, _)| k.clone()).collect();
    t.on_outcome(&keys[0], answer(&["198.18.1.2:80"], 30), now);
    t.on_outcome(&keys[1], answer(&["198.18.1.3:80"], 30), now);
    // b.lab gone while a.lab still gives a backend: removed.
    let (_, change) = t.on_outcome(&keys[1], Outcome::NxDomain, now).unwrap();
    assert_eq!(change.unwrap().after, []);
    assert_eq!(
        t.sets().into_values().collect::<Vec<_>>(),
        [[r("198.18.1.2:80")]]
    );
    // a.lab empty too: that would leave nothing, so it stays, and the note says why.
    let (kind, change) = t.on_outcome(&keys[0], Outcome::Empty, now).unwrap();
    assert_eq!((kind, change), (ResultKind::Empty, None));
    assert_eq!(t.sets()[&keys[0]], [r("198.18.1.2:80")]);
    assert_eq!(
        t.names().next().unwrap().1.note,
        "empty: kept the last 1: removing them would leave the service with no backend"
    );
}

#[test]
fn a_literal_backend_lets_remove_empty_a_name() {
    let text = r#"
[dns]
on_empty = "remove"

[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.9:80" }, { dns = "a.lab", port = 80 }]
"#;
    let (mut t, now) = tracker(text, 1);
    let key = only_key(&t);
    t.on_outcome(&key, answer(&["198.18.1.2:80"], 30), now);
    let (_, change) = t.on_outcome(&key, Outcome::NxDomain, now).unwrap();
    assert_eq!(change.unwrap().before, [r("198.18.1.2:80")]);
}

#[test]
fn a_reload_keeps_the_answers_of_names_still_configured() {
    let (mut t, now) = tracker(ONE_NAME, 1);
    let key = only_key(&t);
    t.on_outcome(&key, answer(&["198.18.1.2:8080"], 30), now);
    let more = format!(
        "{ONE_NAME}\n[[service]]\nname = \"api\"\nvip = \"198.18.0.11:80\"\nbackend = [{{ srv = \"_http._tcp.api.lab\", weight = 3 }}]\n"
    );
    t.sync(&config(&more), now);
    assert_eq!(t.sets()[&key], [r("198.18.1.2:8080")]);
    assert_eq!(t.take_due(now, 10).len(), 1, "only the new name is due");
    // The configured weight overrides the record's.
    let api = t
        .names()
        .find(|(k, _)| k.service == "api")
        .unwrap()
        .0
        .clone();
    t.on_outcome(
        &api,
        Outcome::Answer {
            backends: vec![Resolved {
                addr: "198.18.1.5:9000".parse().unwrap(),
                weight: 20,
            }],
            ttl: Duration::from_secs(10),
        },
        now,
    );
    assert_eq!(t.sets()[&api][0].weight, 3);
    t.sync(&config(""), now);
    assert!(t.is_empty());
}

#[test]
fn expand_adds_resolved_backends_after_literal_ones() {
    let cfg = config(
        r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.2:8080", weight = 5 }, { dns = "web.lab", port = 8080 }]
"#,
    );
    let key = NameKey {
        service: "web".into(),
        backend: cfg.services[0].dns[0].clone(),
    };
    let gone = NameKey {
        service: "web".into(),
        backend: crate::config::DnsBackend {
            name: "old.lab".into(),
            ..key.backend.clone()
        },
    };
    let sets = BTreeMap::from([
        (key, vec![r("198.18.1.2:8080"), r("198.18.1.3:8080")]),
        (gone, vec![r("198.18.1.4:8080")]),
    ]);
    let out = expand(&cfg, &sets);
    let b: Vec<(String, u16)> = out.services[0]
        .backends
        .iter()
        .map(|b| (b.addr.to_string(), b.weight))
        .collect();
    assert_eq!(
        b,
        [
            ("198.18.1.2:8080".to_owned(), 5),
            ("198.18.1.3:8080".to_owned(), 1)
        ]
    );
}

/// Answers from a script the test changes; counts the questions.
#[derive(Default)]
struct Fake {
    answers: Mutex<BTreeMap<String, Outcome>>,
    asked: Mutex<Vec<(Instant, String)>>,
    /// Questions take this long.
    delay: Mutex<Duration>,
}

impl Fake {
    fn set(&self, name: &str, o: Outcome) {
        self.answers.lock().unwrap().insert(name.to_owned(), o);
    }
}

impl Resolve for Fake {
    fn resolve(&self, lookup: Lookup) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(async move {
            self.asked
                .lock()
                .unwrap()
                .push((Instant::now(), lookup.name.clone()));
            let delay = *self.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            self.answers
                .lock()
                .unwrap()
                .get(&lookup.name)
                .cloned()
                .unwrap_or(Outcome::NxDomain)
        })
    }
}

/// A resolver maker that always hands out `fake`.
fn make(fake: &Arc<Fake>) -> task::MakeResolver {
    let fake = fake.clone();
    Box::new(move |_| fake.clone() as Arc<dyn Resolve>)
}

fn start(
    cfg: Config,
) -> (
    Arc<Fake>,
    watch::Sender<Arc<Config>>,
    mpsc::Receiver<DnsEvent>,
) {
    let fake = Arc::new(Fake::default());
    let (config_tx, config_rx) = watch::channel(Arc::new(cfg));
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(task::run(make(&fake), config_rx, tx, 5, Default::default()));
    (fake, config_tx, rx)
}

#[tokio::test(start_paused = true)]
async fn the_task_follows_ttls_and_reports_changes() {
    let t0 = Instant::now();
    let cfg = config(ONE_NAME);
    let fake = Arc::new(Fake::default());
    fake.set("web.lab", answer(&["198.18.1.2:8080"], 10));
    let (config_tx, config_rx) = watch::channel(Arc::new(cfg));
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(task::run(make(&fake), config_rx, tx, 5, Default::default()));

    let e = rx.recv().await.unwrap();
    assert_eq!(e.result, ResultKind::Ok);
    assert_eq!(e.change.unwrap().after, [r("198.18.1.2:8080")]);
    assert_eq!(e.view.answer, ["198.18.1.2:8080 (weight 1)"]);
    assert_eq!(e.view.ttl_s, Some(10));

    // The record changes; the next refresh (2-10 s later: the first answer's refresh
    // is anywhere from the minimum to the TTL) sees it.
    fake.set("web.lab", answer(&["198.18.1.3:8080"], 10));
    let e = rx.recv().await.unwrap();
    let at = Instant::now() - t0;
    assert!(
        at >= Duration::from_secs(2) && at <= Duration::from_secs(10),
        "{at:?}"
    );
    let change = e.change.unwrap();
    assert_eq!(change.before, [r("198.18.1.2:8080")]);
    assert_eq!(change.after, [r("198.18.1.3:8080")]);

    // An unchanged answer is an event without a change.
    let e = rx.recv().await.unwrap();
    assert_eq!((e.result, e.change), (ResultKind::Ok, None));

    // A server that does not answer: failed after the timeout (2 s by default), set kept.
    *fake.delay.lock().unwrap() = Duration::from_secs(60);
    let e = rx.recv().await.unwrap();
    assert_eq!(e.result, ResultKind::Failed);
    assert_eq!(e.change, None);
    assert_eq!(e.view.answer, ["198.18.1.3:8080 (weight 1)"]);
    assert!(
        e.view.note.starts_with("failed (no answer within 2s)"),
        "{:?}",
        e.view
    );

    // A config without the name stops the questions.
    *fake.delay.lock().unwrap() = Duration::ZERO;
    config_tx.send(Arc::new(config(""))).unwrap();
    let asked = fake.asked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.asked.lock().unwrap().len(), asked);
    assert!(rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_thousand_names_are_asked_at_most_max_in_flight_at_a_time_and_spread_out() {
    let mut text = String::from("[dns]\nmin_refresh = \"1s\"\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"198.18.{}.{}:80\"\nbackend = [{{ dns = \"s{i}.lab\", port = 80 }}]\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let (fake, _config_tx, mut rx) = start(config(&text));
    for i in 0..1000 {
        fake.set(&format!("s{i}.lab"), answer(&["198.19.0.1:80"], 30));
    }
    *fake.delay.lock().unwrap() = Duration::from_millis(10);
    for _ in 0..1000 {
        rx.recv().await.unwrap();
    }
    // The first round: 1000 questions, 32 at a time, 10 ms each: about 320 ms.
    let asked = fake.asked.lock().unwrap().clone();
    let first = asked[0].0;
    let per_10ms = asked
        .iter()
        .filter(|(t, _)| *t - first < Duration::from_millis(10))
        .count();
    assert_eq!(per_10ms, task::MAX_IN_FLIGHT);
    // The second round spreads over the jitter window (1..30 s after each answer):
    // no 100 ms has more than a fifth of the names.
    for _ in 0..1000 {
        rx.recv().await.unwrap();
    }
    let asked = fake.asked.lock().unwrap().clone();
    let second: Vec<Instant> = asked[1000..].iter().map(|(t, _)| *t).collect();
    let busiest = second
        .iter()
        .map(|t| {
            second
                .iter()
                .filter(|u| **u >= *t && **u - *t < Duration::from_millis(100))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest < 200, "{busiest} questions within 100 ms");
}

#[test]
fn a_restored_set_stands_until_an_answer_and_follows_the_rules_like_a_good_one() {
    let (mut t, now) = tracker(ONE_NAME, 3);
    let key = only_key(&t);
    let last_run = vec![r("198.18.1.2:8080"), r("198.18.2.2:8080")];
    t.restore(&BTreeMap::from([(key.clone(), last_run.clone())]));
    assert_eq!(t.sets().get(&key), Some(&last_run));
    assert!(t.state(&key).unwrap().note.contains("from the last run"));
    assert_eq!(t.next_due(), Some(now), "still resolved at once");

    // The DNS server is down: the set from the last run is kept.
    t.take_due(now, 1);
    let (kind, change) = t
        .on_outcome(&key, Outcome::Failed("timeout".into()), now)
        .unwrap();
    assert_eq!((kind, change), (ResultKind::Failed, None));
    assert_eq!(t.sets().get(&key), Some(&last_run));

    // The first answer replaces it, as a change from it.
    t.take_due(t.next_due().unwrap(), 1);
    let (_, change) = t
        .on_outcome(&key, answer(&["198.18.3.2:8080"], 5), now)
        .unwrap();
    let change = change.expect("a change");
    assert_eq!(change.before, last_run);
    assert_eq!(change.after, [r("198.18.3.2:8080")]);

    // A name that has answered is never overwritten by a record.
    t.restore(&BTreeMap::from([(key.clone(), last_run)]));
    assert_eq!(t.sets().get(&key).unwrap(), &[r("198.18.3.2:8080")]);
}

#[test]
fn a_restored_set_is_removed_by_nxdomain_when_the_rule_says_so() {
    let text = r#"
[dns]
on_empty = "remove"

[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.9.2:8080" }, { dns = "web.lab", port = 8080 }]
"#;
    let (mut t, now) = tracker(text, 3);
    let key = only_key(&t);
    t.restore(&BTreeMap::from([(key.clone(), vec![r("198.18.1.2:8080")])]));
    t.take_due(now, 1);
    let (_, change) = t.on_outcome(&key, Outcome::NxDomain, now).unwrap();
    assert_eq!(change.expect("removed").after, []);
    assert!(t.sets().is_empty());
}
