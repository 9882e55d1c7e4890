#!/usr/bin/env bash
# Installs everything vipd's build and tests need on a fresh Debian bookworm machine.
# Idempotent: when everything is present it only checks, in a few seconds.
#   - Debian packages (qemu, ipvsadm, iproute2, busybox for the VM initramfs, ...)
#   - rustup component rust-src (the eBPF crate is built with -Z build-std=core)
#   - bpf-linker, built against rustc's own LLVM
#   - cargo-fuzz (the fuzz targets, `cargo xtask fuzz`) and g++ for the libFuzzer it builds
#   - the VM kernels: Debian 6.1 (bookworm) and 6.12 (bookworm-backports), extracted
#     from their packages into the cache, never installed into /boot
set -euo pipefail

CACHE="${VIPD_CACHE:-$HOME/.cache/vipd}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
log() { printf 'setup: %s\n' "$*" >&2; }

# dnsmasq-base and bind9-dnsutils: the DNS servers and `dig` of the UDP tests, copied into
# the VM's initramfs. dnsmasq-base is the binary alone: unlike the `dnsmasq` package it
# ships no service, so nothing starts or listens on this machine.
APT_PACKAGES=(ipvsadm iproute2 busybox-static kmod cpio xz-utils zstd
              socat curl nftables iptables conntrack binutils ca-certificates
              dnsmasq-base bind9-dnsutils
              ethtool iputils-ping python3  # the XDP lab (host tier)
              dpkg-dev mmdebstrap lintian man-db  # the Debian package (deb, deb-test)
              g++)  # libFuzzer, built from source by the fuzz targets (xtask fuzz)
BACKPORTS=/etc/apt/sources.list.d/vipd-backports.sources

apt_updated=0
apt_update() { [ $apt_updated -eq 1 ] || { log "apt-get update"; $SUDO apt-get update -qq; apt_updated=1; }; }

ensure_backports() {
  [ -f "$BACKPORTS" ] && return
  log "adding bookworm-backports (for the 6.12 kernel)"
  $SUDO tee "$BACKPORTS" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=0
}

ensure_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    apt_update
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # qemu from backports: the machine image ships qemu-utils 10 from there, and bookworm's
  # qemu-system 7.2 conflicts with it.
  if ! command -v qemu-system-x86_64 >/dev/null; then
    apt_update
    log "installing qemu-system-x86 (bookworm-backports)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      -t bookworm-backports qemu-system-x86 >/dev/null
  fi
}

# ensure_unstarted PACKAGE WHY: installs a package whose binary alone is wanted, with a
# policy-rc.d that denies every action, so that it starts no service on this machine.
ensure_unstarted() {
  local pkg="$1" why="$2"
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' && return
  apt_update
  log "installing $pkg ($why; not started here)"
  local policy=/usr/sbin/policy-rc.d had_policy=0
  [ -e "$policy" ] && had_policy=1
  if [ $had_policy -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends \
    "$pkg" >/dev/null || { [ $had_policy -eq 1 ] || $SUDO rm -f "$policy"; exit 1; }
  [ $had_policy -eq 1 ] || $SUDO rm -f "$policy"
}

# keepalived: a peer the failover benchmark compares with. Only its binary is used (copied
# into the VM's initramfs).
ensure_keepalived() { ensure_unstarted keepalived "benchmark peer"; }

# prometheus: for promtool, which checks the metrics exposition and the alert rules in
# dist/prometheus (crates/vipd/tests/dist_monitoring.rs).
ensure_promtool() {
  command -v promtool >/dev/null && return
  ensure_unstarted prometheus "promtool for the monitoring tests"
}

ensure_rust() {
  rustup component list --installed 2>/dev/null | grep -q '^rust-src' || {
    log "rustup component add rust-src"; rustup component add rust-src; }
}

ensure_bpf_linker() {
  if command -v bpf-linker >/dev/null && ! ldd "$(command -v bpf-linker)" | grep -q 'not found'; then
    return
  fi
  local prefix="$CACHE/llvm" lib
  lib="$(ls "$(rustc --print sysroot)"/lib/libLLVM.so.*-rust-* | head -1)"
  mkdir -p "$prefix/lib"
  ln -sf "$lib" "$prefix/lib/libLLVM.so"
  ln -sf "$lib" "$prefix/lib/$(basename "$lib")"
  log "building bpf-linker against rustc's LLVM ($(basename "$lib"))"
  LLVM_PREFIX="$prefix" cargo install --locked bpf-linker --no-default-features --features llvm-22
}

# cargo-fuzz, the version the fuzz targets were verified with on the stable toolchain.
CARGO_FUZZ_VERSION=0.13.2
ensure_cargo_fuzz() {
  cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION" && return
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
}

# ensure_kernel NAME SUITE: the kernel package that linux-image-amd64 in SUITE depends on,
# extracted into $CACHE/kernels/NAME (vmlinuz + lib/modules/<release>).
ensure_kernel() {
  local name="$1" suite="$2" pkg dir
  dir="$CACHE/kernels/$name"
  if [ -f "$dir/ready" ]; then return; fi
  apt_update
  pkg="$(apt-cache depends -t "$suite" linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"
  [ -n "$pkg" ] || { log "cannot resolve linux-image-amd64 in $suite"; exit 1; }
  log "fetching $pkg for the $name VM"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -t "$suite" "$pkg" >/dev/null)
  rm -rf "$dir"; mkdir -p "$dir"
  dpkg-deb -x "$tmp"/*.deb "$dir/root"
  rm -rf "$tmp"
  local vmlinuz; vmlinuz="$(ls "$dir"/root/boot/vmlinuz-* | head -1)"
  ln -sf "root/boot/$(basename "$vmlinuz")" "$dir/vmlinuz"
  basename "$vmlinuz" | sed 's/^vmlinuz-//' > "$dir/release"
  echo "$pkg" > "$dir/package"
  touch "$dir/ready"
}

ensure_backports
ensure_packages
ensure_keepalived
ensure_promtool
ensure_rust
ensure_bpf_linker
ensure_cargo_fuzz
ensure_kernel 6.1 bookworm
ensure_kernel 6.12 bookworm-backports
log "ready (cache: $CACHE)"
