#!/usr/bin/env bash
# Runs every test vipd has, both tiers, after installing what they need:
#   host tier: formatting, clippy, unit tests and host-kernel eBPF tests (cargo test),
#              and the demo's native lab on the socket data plane
#   VM tier:   IPVS, kprobe and end-to-end tests inside Debian 6.1 and 6.12 under qemu
# Exits non-zero if anything fails. Extra arguments go to the VM runner
# (e.g. --kernel 6.1, or a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== host tier"
cargo fmt --all -- --check
cargo clippy --workspace --exclude vipd-ebpf --all-targets --quiet -- -D warnings
# The fuzz crate is a workspace of its own (cargo-fuzz builds it apart): same checks.
cargo fmt --manifest-path crates/vipd/fuzz/Cargo.toml -- --check
cargo clippy --manifest-path crates/vipd/fuzz/Cargo.toml --all-targets --quiet \
  --target-dir target/fuzz-clippy -- -D warnings
cargo test --quiet
# The demo's native lab with the socket data plane (its own feature: the VM runner runs
# every other test binary of tests/vm inside the VM).
cargo test --quiet -p vipd-vmtests --features native-lab --test native_lab
cargo xtask fuzz --seconds 10  # every parser of untrusted input, 10 s each
cargo xtask deb-test  # the Debian package: lintian, install, upgrade, purge

echo "== VM tier"
cargo xtask vm-test "$@"
