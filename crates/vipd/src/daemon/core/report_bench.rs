//! Benchmark (prints a figure, asserts nothing about it): what the core spends on one
//! connection outcome a plane reports, the work done for every connection to a VIP.
//! `cargo test --release -p vipd --lib report_cost -- --ignored --nocapture`.

use tokio::time::Instant;

use super::tests::{b, report, web, web_with, Rig, SEC};
use crate::model::Outcome;

#[tokio::test(start_paused = true)]
#[ignore = "benchmark: cargo test --release -p vipd --lib report_cost -- --ignored"]
async fn report_cost() {
    // A small service and a large one: what a report costs must not grow with the
    // service's backends.
    for backends in [3, 100] {
        let mut r = Rig::new(&web_with(backends));
        let established = report(
            web(),
            Outcome::Established { latency: None },
            b(1),
            SEC,
            SEC,
        );
        let n = 300_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            r.core.on_report(&established, Instant::now());
        }
        println!(
            "core: {:.0} ns per established report, {backends} backends ({n} reports)",
            t.elapsed().as_nanos() as f64 / f64::from(n)
        );
    }
}
