#!/usr/bin/env bash
# Refusal path benchmark (host tier, root): from the kernel seeing a refused connection
# to the backend's weight 0 written, with the XDP plane in the namespace lab, against
# the client's own refused connect in the same run. Prints figures and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --release -p vipd --test refusal_bench -- --ignored --nocapture
