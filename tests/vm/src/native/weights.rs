//! The socket plane's weights as the daemon reports them: for a
//! [`crate::weights::WeightWatcher`] where there is no IPVS table to dump.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use vipd::daemon::control;

/// A dump function for [`crate::weights::WeightWatcher::start_with`]: the weights of
/// service `name`'s backends in the status of the daemon whose control socket is in
/// `runtime` (the weights it wrote to the data plane).
pub fn status_weights(
    runtime: PathBuf,
    name: &str,
) -> impl FnMut() -> Result<BTreeMap<SocketAddr, u32>, ()> + Send + 'static {
    let socket = control::socket_path(&runtime);
    let name = name.to_string();
    move || {
        let v = control::query_status(&socket, Duration::from_secs(1)).map_err(|_| ())?;
        let s = v.services.iter().find(|s| s.name == name).ok_or(())?;
        s.backends
            .iter()
            .map(|b| Ok((b.addr.parse().map_err(|_| ())?, b.weight)))
            .collect()
    }
}
