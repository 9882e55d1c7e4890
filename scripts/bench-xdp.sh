#!/usr/bin/env bash
# XDP data plane benchmark (host tier, root): packets/s through vipd's XDP balancer and
# through nftables DNAT in the same namespace lab, the program's cost per packet, and
# Maglev's flows moved when one of N backends is removed. Prints figures and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --release -p vipd --test xdp_bench -- --ignored --nocapture
