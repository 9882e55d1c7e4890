//! `vipd run` with `dataplane = "xdp"`: attach the balancer, program the maps from the
//! config, then loop: health records from the program go to the health state machine,
//! its effective weights back into the Maglev tables (only differences are written), a
//! changed config file is reloaded (a bad one is rejected whole and the running one
//! kept). With `pin_maps` the program stays attached (pinned link) and the flow table
//! survives a restart; stopping vipd leaves the data plane as it is, as with IPVS.
//!
//! Not here yet (the IPVS daemon has them): control socket and `vipd status`, metrics,
//! the health record across restarts, active checks (`check = {...}`; the probation
//! probe is done).

use std::{
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use anyhow::Context;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{
    health::XdpHealth,
    loader::{ensure_bpffs, Sizes},
    Dataplane, XdpProgram, XdpServiceSpec,
};
use crate::{
    config::{self, ServiceKey, XdpSettings},
    health::{DestId, Transition},
};

/// How often the config file is looked at.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// The longest the loop sleeps waiting for records.
const POLL: Duration = Duration::from_millis(100);

fn pin_dir(x: &XdpSettings) -> Option<PathBuf> {
    x.pin_maps.then(|| {
        std::env::var_os("VIPD_XDP_PIN_DIR")
            .map_or_else(|| PathBuf::from(XdpSettings::PIN_DIR), PathBuf::from)
    })
}

/// Waits until `fd` is readable or `timeout` passes.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
}

struct Probe {
    service: ServiceKey,
    dest: DestId,
    ok: bool,
}

fn probe(tx: &mpsc::Sender<Probe>, service: ServiceKey, dest: DestId, timeout: Duration) {
    let tx = tx.clone();
    std::thread::spawn(move || {
        let ok =
            std::net::TcpStream::connect_timeout(&SocketAddr::new(dest.0, dest.1), timeout).is_ok();
        let _ = tx.send(Probe { service, dest, ok });
    });
}

/// Runs until killed.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let mut config = config::load(path).map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    let x = config
        .dataplane
        .xdp()
        .cloned()
        .context("the config does not use dataplane = \"xdp\"")?;
    let pins = pin_dir(&x);
    if pins.is_some() {
        ensure_bpffs()?;
    }
    let mut prog =
        XdpProgram::load(Sizes::default(), pins.as_deref()).context("loading the XDP program")?;
    match &pins {
        Some(dir) => prog.attach_pinned(&x.interface, dir)?,
        None => prog.attach(&x.interface)?,
    }
    let mut dp = Dataplane::adopt(prog.take_maps()?)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut health = XdpHealth::new(&config, seed);
    let mut applied: Vec<XdpServiceSpec> = health.specs(&config, Instant::now());
    let ch = dp.apply(&applied)?;
    info!(
        interface = %x.interface,
        services = applied.len(),
        writes = ch.total(),
        pinned = pins.is_some(),
        "xdp data plane attached"
    );
    let (probe_tx, probe_rx) = mpsc::channel::<Probe>();
    let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
    loop {
        let now = Instant::now();
        let wait = health
            .next_deadline()
            .map_or(POLL, |d| d.saturating_duration_since(now).min(POLL));
        wait_readable(dp.maps().as_fd(), wait);
        let now = Instant::now();
        let mut transitions = Vec::new();
        while let Some(ev) = dp.maps_mut().next_health() {
            match ev {
                Ok(ev) => transitions.extend(health.observe(&config, &ev, now)),
                Err(e) => warn!("undecodable health record: {e}"),
            }
        }
        for p in probe_rx.try_iter() {
            transitions.extend(health.probed(p.service, p.dest, p.ok, now));
        }
        transitions.extend(health.tick(now));
        for (service, t) in &transitions {
            match t {
                Transition::ProbeWanted { dest } => {
                    let timeout = config
                        .services
                        .iter()
                        .find(|s| s.key == *service)
                        .and_then(|s| s.health.as_ref().and_then(|h| h.probe_timeout))
                        .unwrap_or(Duration::from_secs(1));
                    probe(&probe_tx, *service, *dest, timeout);
                    info!(%service, backend = ?dest, "probing");
                }
                other => info!(%service, transition = ?other, "health"),
            }
        }
        if now >= next_housekeeping {
            next_housekeeping = now + HOUSEKEEPING;
            let new_text = std::fs::read_to_string(path).unwrap_or_default();
            if new_text != text {
                text = new_text;
                match config::parse(path, &text) {
                    Ok(c) if c.dataplane.xdp() == Some(&x) => {
                        transitions.extend(health.update(&c, now));
                        config = c;
                        info!("config reloaded");
                    }
                    Ok(_) => warn!(
                        "config reload rejected: changing the data plane or its interface needs a restart"
                    ),
                    Err(d) => warn!("config reload rejected, keeping the running one:\n{d}"),
                }
            }
        }
        let want = health.specs(&config, now);
        if want != applied {
            let ch = dp.apply(&want)?;
            info!(writes = ch.total(), "weights written");
            applied = want;
        }
    }
}
