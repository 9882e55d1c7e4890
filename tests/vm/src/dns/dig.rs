//! `dig`, the real client: one query for [`WHICH`] TXT to a server, with a 1 s timeout
//! and no retry, from the VM's root namespace.

use std::{net::SocketAddr, process::Command};

use super::wire::WHICH;

/// Runs `dig @ADDR -p PORT which.vipd.test TXT +short +time=1 +tries=1`. Returns the
/// answer's text without quotes (the backend's name), or dig's output if it failed or
/// printed no answer.
pub fn dig_txt(server: SocketAddr) -> Result<String, String> {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), WHICH, "TXT"])
        .args(["+short", "+time=1", "+tries=1"])
        .output()
        .map_err(|e| format!("running dig: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = stdout.trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(name) if out.status.success() && !name.contains('\n') => Ok(name.to_owned()),
        _ => Err(format!(
            "dig @{server} ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}
