//! Prints IPVS info, timeouts, services and their destinations, like `ipvsadm -Ln --stats`.
//!
//! Run as root (CAP_NET_ADMIN) with the `ip_vs` module loaded:
//! `cargo run -p vipd-ipvs --example ipvs-dump`

use std::process::ExitCode;

use vipd_ipvs::{Client, Destination, ForwardMethod, Service, ServiceFlags, Stats};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipvs-dump: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), vipd_ipvs::Error> {
    let mut ipvs = Client::connect()?;
    let info = ipvs.info()?;
    let (major, minor, patch) = info.version_triplet();
    println!(
        "IP Virtual Server version {major}.{minor}.{patch} (size={}), family id {}",
        info.conn_table_size,
        ipvs.family_id()
    );
    let t = ipvs.timeouts()?;
    println!(
        "Timeouts: tcp {} tcpfin {} udp {}",
        opt(t.tcp),
        opt(t.tcp_fin),
        opt(t.udp)
    );
    let services = ipvs.services()?;
    println!("{} service(s)", services.len());
    for svc in &services {
        print_service(svc);
        for dest in ipvs.destinations(&svc.key)? {
            print_dest(&dest);
        }
    }
    Ok(())
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn print_service(svc: &Service) {
    let mut extra = String::new();
    if svc.flags.contains(ServiceFlags::PERSISTENT) {
        extra.push_str(&format!(
            " persistent {} mask {:?}",
            svc.timeout, svc.netmask
        ));
    }
    if svc.flags.contains(ServiceFlags::ONE_PACKET) {
        extra.push_str(" ops");
    }
    if let Some(pe) = &svc.pe_name {
        extra.push_str(&format!(" pe {pe}"));
    }
    println!("{} {} {:?}{extra}", svc.key, svc.scheduler, svc.flags);
    if let Some(s) = &svc.stats {
        print_stats("   ", s);
    }
}

fn print_dest(d: &Destination) {
    let fwd = match d.forward {
        ForwardMethod::Masquerade => "Masq".to_owned(),
        ForwardMethod::Local => "Local".to_owned(),
        ForwardMethod::Tunnel { kind, port, flags } => {
            format!("Tunnel({kind:?} port {port} flags {:#x})", flags.bits())
        }
        ForwardMethod::DirectRoute => "Route".to_owned(),
        ForwardMethod::Bypass => "Bypass".to_owned(),
    };
    let addr = match d.addr {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    println!(
        "  -> {addr}:{} {fwd} weight {} thresholds {}/{} active {} inactive {} persistent {}",
        d.port,
        d.weight,
        d.upper_threshold,
        d.lower_threshold,
        d.active_conns,
        d.inactive_conns,
        d.persistent_conns
    );
    if let Some(s) = &d.stats {
        print_stats("     ", s);
    }
}

fn print_stats(indent: &str, s: &Stats) {
    println!(
        "{indent}conns {} inpkts {} outpkts {} inbytes {} outbytes {} | cps {} inpps {} outpps {} inbps {} outbps {}",
        s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes, s.cps, s.inpps, s.outpps, s.inbps, s.outbps
    );
}
