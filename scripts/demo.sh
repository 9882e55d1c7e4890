#!/usr/bin/env bash
# vipd's main job. The lab demo (vipd run against failing backends, with a live view and
# a fault-to-quarantine summary) arrives with the daemon (issue 5). Until then this shows
# what the platform does today: it boots each VM kernel and, through an IPVS virtual IP,
# forwards real TCP connections to backends in network namespaces while vipd's kernel
# probes name each connection's real backend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo xtask vm-test "$@"
