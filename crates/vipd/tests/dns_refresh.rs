//! Host tier: the resolver task with the real resolver (hickory) against a DNS server
//! on loopback that this test runs, 1,000 names with a 5 s TTL. Measures the resolver's
//! CPU time and how the questions spread over time (no burst once the first round is
//! done), and prints both; fails if the CPU time or a burst is out of bounds.

use std::{
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};
use vipd::{config, dns};

const NAMES: usize = 1000;
const TTL_S: u8 = 5;

/// Answers every A question with 198.19.0.1, TTL 5 s; records when each came.
fn responder(sock: UdpSocket, stop: Arc<AtomicBool>, seen: Arc<Mutex<Vec<Instant>>>) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        seen.lock().unwrap().push(Instant::now());
        // The question: header (12 bytes), the name's labels, type and class.
        let mut end = 12;
        while end < n && buf[end] != 0 {
            end += usize::from(buf[end]) + 1;
        }
        let end = end + 5;
        if end > n {
            continue;
        }
        let mut out = buf[..end].to_vec();
        out[2] = 0x84 | (buf[2] & 0x01); // QR, AA, RD as asked
        out[3] = 0x00; // NOERROR
        out[6..8].copy_from_slice(&1u16.to_be_bytes()); // one answer
        out[8..12].fill(0);
        let qtype = u16::from_be_bytes([buf[end - 4], buf[end - 3]]);
        if qtype == 1 {
            out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, TTL_S, 0, 4, 198, 19, 0, 1]);
        } else {
            out[6..8].fill(0);
        }
        let _ = sock.send_to(&out, from);
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_thousand_names_refresh_with_bounded_cpu_and_no_burst() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let t = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || responder(sock, stop, seen))
    };

    let mut text =
        format!("[dns]\nserver = \"{server}\"\nmin_refresh = \"1s\"\nmax_refresh = \"60s\"\n");
    for i in 0..NAMES {
        text.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"198.18.{}.{}:80\"\nbackend = [{{ dns = \"s{i}.bench.lab\", port = 80 }}]\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let cfg = config::parse("bench.toml", &text).unwrap();

    // One thread runs the resolver and its lookups, so its CPU time is theirs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_for = Duration::from_secs(20);
    let (results, cpu, first_round) = rt.block_on(async {
        let (_configs_tx, configs) = watch::channel(Arc::new(cfg));
        let (tx, mut rx) = mpsc::channel(4096);
        let cpu0 = thread_cpu();
        let start = Instant::now();
        tokio::spawn(dns::task::run(
            Box::new(dns::hickory::make),
            configs,
            tx,
            11,
            Default::default(),
        ));
        let mut results = 0u64;
        let mut ok_first = 0;
        let mut first_round = None;
        let deadline = tokio::time::Instant::now() + run_for;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            results += 1;
            if e.result == dns::ResultKind::Ok && e.change.is_some() {
                ok_first += 1;
                if ok_first == NAMES {
                    first_round = Some(start.elapsed());
                }
            }
        }
        (results, thread_cpu() - cpu0, first_round)
    });
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();

    let first_round = first_round.expect("every name answered");
    let seen = seen.lock().unwrap().clone();
    let t0 = seen[0];
    // After the first round: the busiest 100 ms.
    let later: Vec<Duration> = seen
        .iter()
        .map(|t| *t - t0)
        .filter(|d| *d > first_round + Duration::from_secs(1))
        .collect();
    let busiest = later
        .iter()
        .map(|d| {
            later
                .iter()
                .filter(|e| **e >= *d && **e - *d < Duration::from_millis(100))
                .count()
        })
        .max()
        .unwrap_or(0);
    let steady_rate =
        later.len() as f64 / (run_for.as_secs_f64() - first_round.as_secs_f64() - 1.0).max(1.0);
    println!(
        "1,000 DNS names, TTL {TTL_S} s, min_refresh 1 s, {}s: {results} resolutions, first \
         round in {} ms, then {steady_rate:.0} questions/s, busiest 100 ms: {busiest} \
         questions, resolver CPU {} ms ({:.1}% of one core)",
        run_for.as_secs(),
        first_round.as_millis(),
        cpu.as_millis(),
        100.0 * cpu.as_secs_f64() / run_for.as_secs_f64()
    );
    // Each name every 4.5-5 s after the first round (spread over 2.5-5 s).
    assert!(results as usize >= 3 * NAMES, "{results} resolutions");
    // No burst: 1,000 names every ~5 s is 20 per 100 ms; allow 3x.
    let even = NAMES as f64 / f64::from(TTL_S) / 10.0;
    assert!(
        (busiest as f64) <= 3.0 * even,
        "a burst of {busiest} questions in 100 ms (even: {even})"
    );
    assert!(
        cpu.as_secs_f64() < 0.5 * run_for.as_secs_f64(),
        "resolver CPU {cpu:?} over {run_for:?}"
    );
}
