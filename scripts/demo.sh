#!/usr/bin/env bash
# vipd's main job: the lab demo. Boots a Debian kernel with IPVS under qemu, starts three
# backends in network namespaces, runs `vipd run` with examples/lab.toml, drives 50 new
# client connections/s through the VIP, kills one backend's server (it refuses), then
# blackholes another (it drops SYNs), and lets both recover. A live view prints once a
# second; the demo ends with a summary: connections attempted and failed, and the
# fault-to-quarantine time per backend.
#
#   scripts/demo.sh              # on Debian's 6.12 kernel
#   scripts/demo.sh --kernel 6.1 # or 6.1 (repeat --kernel for both)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$#" -eq 0 ]; then
    set -- --kernel 6.12
fi
cargo xtask vm-bench "$@" demo
