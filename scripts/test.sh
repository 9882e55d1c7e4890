#!/usr/bin/env bash
# Runs every test vipd has, both tiers, after installing what they need:
#   host tier: formatting, clippy, unit tests and host-kernel eBPF tests (cargo test),
#              and the demo's native lab on the socket data plane
#   VM tier:   IPVS, kprobe and end-to-end tests inside Debian 6.1 and 6.12 under qemu
# Exits non-zero if anything fails, and prints how long each step took either way.
# Extra arguments go to the VM runner (e.g. --kernel 6.1, or a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

steps=()
current=""
started=$SECONDS
step_started=$SECONDS
report() {
  local rc=$?
  echo "== time per step"
  printf '%s\n' "${steps[@]}"
  if [ "$rc" -ne 0 ]; then
    printf '  %-44s %5d s  (exit %d)\n' "$current" $((SECONDS - step_started)) "$rc"
  fi
  printf '  %-44s %5d s\n' "all" $((SECONDS - started))
  exit "$rc"
}
trap report EXIT
# step NAME COMMAND...: runs the command and records how long it took.
step() {
  current=$1 step_started=$SECONDS
  shift
  "$@"
  steps+=("$(printf '  %-44s %5d s' "$current" $((SECONDS - step_started)))")
}

step "setup" bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== host tier"
step "fmt" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --exclude vipd-ebpf --all-targets --quiet -- -D warnings
# The fuzz crate is a workspace of its own (cargo-fuzz builds it apart): same checks.
step "fuzz crate: fmt" cargo fmt --manifest-path crates/vipd/fuzz/Cargo.toml -- --check
step "fuzz crate: clippy" cargo clippy --manifest-path crates/vipd/fuzz/Cargo.toml \
  --all-targets --quiet --target-dir target/fuzz-clippy -- -D warnings
step "cargo test" cargo test --quiet
# The demo's native lab with the socket data plane (its own feature: the VM runner runs
# every other test binary of tests/vm inside the VM).
step "native lab" cargo test --quiet -p vipd-vmtests --features native-lab --test native_lab
step "fuzz, 10 s per target" cargo xtask fuzz --seconds 10  # every parser of untrusted input
step "Debian package" cargo xtask deb-test  # lintian, install, upgrade, purge

echo "== VM tier"
step "VM tests" cargo xtask vm-test "$@"
