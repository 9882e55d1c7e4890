#!/usr/bin/env bash
# vipd's main job: the lab demo. Starts three backends in network namespaces behind a
# router, runs `vipd run` with examples/lab.toml, drives 50 new client connections/s
# through the VIP, kills one backend's server (it refuses), then blackholes another (it
# drops SYNs), and lets both recover. A live view prints once a second; the demo ends
# with a summary: connections attempted and failed, and the fault-to-quarantine time per
# backend.
#
# Two ways to run it:
#   - in a VM with IPVS: boots a Debian kernel under qemu; the lab's client host is the VM.
#   - natively (no VM): vipd's socket data plane on this host's kernel; every host of the
#     lab is a network namespace (the client host too) and the clients run in a cgroup of
#     the demo's, so this host's own networking is left as it is. Needs root (sudo).
# Without an option it runs natively where IPVS is missing (`modprobe -n ip_vs` fails)
# and the kernel has the socket plane's features (Linux 5.9+, cgroup v2 mounted), and in
# the VM otherwise.
#
#   scripts/demo.sh              # pick as above
#   scripts/demo.sh --native     # on this host, socket data plane
#   scripts/demo.sh --vm         # in the VM on Debian's 6.12 kernel
#   scripts/demo.sh --kernel 6.1 # in the VM on 6.1 (repeat --kernel for both)
set -euo pipefail
cd "$(dirname "$0")/.."

given="$*"
native=0
vm=0
vm_args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --native) native=1 ;;
        --vm) vm=1 ;;
        --kernel) vm=1; vm_args+=("$1" "${2:?--kernel needs a value}"); shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) vm_args+=("$1") ;;
    esac
    shift
done
if [ "$native" -eq 1 ] && { [ "$vm" -eq 1 ] || [ "${#vm_args[@]}" -gt 0 ]; }; then
    echo "demo: --native runs on this host and takes no other option (got: $given)" >&2
    exit 2
fi
mode=""
[ "$native" -eq 1 ] && mode=native
[ "$vm" -eq 1 ] && mode=vm

ipvs_available() {
    [ -d /sys/module/ip_vs ] || { command -v modprobe >/dev/null && modprobe -n -q ip_vs 2>/dev/null; }
}

# What the socket data plane needs (vipd checks the rest and says what is missing).
socket_plane_available() {
    local major minor
    IFS=. read -r major minor _ < /proc/sys/kernel/osrelease
    minor="${minor%%[!0-9]*}"
    { [ "$major" -gt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -ge 9 ]; }; } &&
        grep -qw cgroup2 /proc/mounts
}

if [ -z "$mode" ]; then
    if ! ipvs_available && socket_plane_available; then
        mode=native
        echo "demo: no IPVS on this host, and its kernel has the socket data plane's features: running natively (--vm for the VM)"
    else
        mode=vm
    fi
fi

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$mode" = vm ]; then
    [ "${#vm_args[@]}" -gt 0 ] || vm_args=(--kernel 6.12)
    exec cargo xtask vm-bench "${vm_args[@]}" demo
fi

# Natively: build vipd and the demo, then run the demo as root with this vipd first on
# PATH. Whatever way it ends (Ctrl-C included), what it made is removed.
cargo build --release --quiet -p vipd --bin vipd -p vipd-vmtests --example demo
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "demo: the native demo needs root (namespaces, a cgroup, BPF programs); run it as root" >&2
        exit 1
    }
    as_root=(sudo)
fi
demo=("${as_root[@]}" env "PATH=$target/release:$PATH" "$target/release/examples/demo")
cleanup() { "${demo[@]}" --cleanup || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"${demo[@]}" --native
