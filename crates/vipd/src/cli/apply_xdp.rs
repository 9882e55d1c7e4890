//! `vipd apply` with `dataplane = "xdp"`: loads the balancer, attaches it to the
//! configured interface through a pinned link (replacing an earlier one atomically) and
//! brings the pinned maps to the config, writing only the differences. The program and
//! its maps stay after the command exits; flows in the flow table keep their backends.

use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context};
use vipd::{
    config::{Config, XdpSettings},
    xdp::{desired, loader::ensure_bpffs, Dataplane, Sizes, XdpProgram},
};

pub fn run(cfg: &Config, x: &XdpSettings, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    if dry_run {
        bail!("--dry-run is not supported with dataplane = \"xdp\" yet");
    }
    if !x.pin_maps {
        bail!(
            "vipd apply with dataplane = \"xdp\" needs pin_maps = true: the program and its maps must outlive the command (or use vipd run)"
        );
    }
    ensure_bpffs()?;
    // Tests pin elsewhere so that they never touch a real balancer's state.
    let dir_override = std::env::var_os("VIPD_XDP_PIN_DIR");
    let dir = dir_override
        .as_deref()
        .map_or(Path::new(XdpSettings::PIN_DIR), Path::new);
    let mut prog =
        XdpProgram::load(Sizes::default(), Some(dir)).context("loading the XDP program")?;
    prog.attach_pinned(&x.interface, dir)?;
    let mut dp = Dataplane::adopt(prog.take_maps()?)?;
    let specs = desired::specs(cfg);
    let ch = dp.apply(&specs)?;
    let backends: usize = specs.iter().map(|s| s.backends.len()).sum();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dataplane": "xdp",
                "interface": x.interface,
                "services": specs.len(),
                "backends": backends,
                "writes": ch.total(),
                "services_written": ch.services_written,
                "services_removed": ch.services_removed,
                "backends_written": ch.backends_written,
                "backends_freed": ch.backends_freed,
                "maglev_entries": ch.maglev_entries,
            })
        );
    } else {
        println!(
            "xdp on {}: {} services, {} backends; {} map writes ({} services, {} removed; {} backends, {} freed; {} Maglev entries)",
            x.interface,
            specs.len(),
            backends,
            ch.total(),
            ch.services_written,
            ch.services_removed,
            ch.backends_written,
            ch.backends_freed,
            ch.maglev_entries
        );
    }
    Ok(ExitCode::SUCCESS)
}
