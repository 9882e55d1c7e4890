//! Builds the VM's initramfs: a static busybox, host tools with the shared libraries
//! they need, the kernel modules the tests use laid out as on a host (with depmod's
//! indexes and kmod's modprobe, so that modules load on demand), the test binaries and an
//! init script that runs them and reports the result on the console.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;

/// Modules the init script loads at boot (insmod, dependencies first), as a host's
/// modules-load.d would: devices and the nftables core the lab sets up before any test.
const BOOT_MODULES: &[&str] = &[
    "veth",
    "dummy",
    "tun",
    "ipip",
    "ip6_tunnel",
    "ip_gre",
    "fou",
    "fou6",
    "nf_tables",
];

/// Modules shipped for the kernel to load on demand (through `/sbin/modprobe`), never at
/// boot, as on a real host: IPVS (its generic netlink family's request autoloads
/// `ip_vs`; a service autoloads its scheduler `ip_vs_<name>`), conntrack and NAT, the
/// nftables expressions a firewall uses (`ct state` needs `nft_ct`), and netem (`tc`
/// loads it) for a slow backend.
const ON_DEMAND_MODULES: &[&str] = &[
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_lblc",
    "ip_vs_lblcr",
    "ip_vs_dh",
    "ip_vs_sh",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_fo",
    "ip_vs_ovf",
    "ip_vs_mh",
    "nf_conntrack",
    "nf_conntrack_netlink",
    "nf_nat",
    "nft_ct",
    "nft_nat",
    "nft_chain_nat",
    "nft_masq",
    "nft_redir",
    "nft_reject_inet",
    "nft_fib_inet",
    "nft_limit",
    "nft_log",
    "sch_netem",
];

/// On-demand modules that a kernel of the matrix may be built without, with their build
/// option: shipped when the option is `m` (nothing to do for `y`). The tests read the
/// kernel's build options from [`KERNEL_CONFIG`] to know which to expect (Debian's 6.1
/// has no `ip_vs_twos`, its 6.12 has it). `udp_diag` (with `inet_diag`): the socket
/// plane's dump of connected UDP sockets before it destroys those of a backend taken out
/// (the kernel loads it at the first `sock_diag` request for UDP).
const OPTIONAL_MODULES: &[(&str, &str)] = &[
    ("ip_vs_twos", "CONFIG_IP_VS_TWOS"),
    ("inet_diag", "CONFIG_INET_DIAG"),
    ("udp_diag", "CONFIG_INET_UDP_DIAG"),
];

/// Index files of the kernel's module directory that `depmod` and `modprobe` read, copied
/// when the package has them (`modules.builtin` lets modprobe tell a built-in module
/// from a missing one).
const MODULE_INDEXES: &[&str] = &[
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// Where the image holds the kernel's build configuration, for the tests.
const KERNEL_CONFIG: &str = "vipd/kernel.config";

/// Host programs the tests call, found on PATH: `nft` injects faults (SYN and UDP
/// drops) and is the client host's firewall, `conntrack` empties the connection tracking
/// table between tests, `keepalived` is the peer the failover benchmark compares with,
/// `dnsmasq` is the UDP tests' DNS backend and `dig` their real client, `setpriv` runs
/// vipd with the systemd unit's capability bounding set, `tc` (with `sch_netem`) makes a
/// backend slow.
const TOOLS: &[&str] = &[
    "bash",
    "ip",
    "ipvsadm",
    "ss",
    "nft",
    "conntrack",
    "keepalived",
    "dnsmasq",
    "dig",
    "setpriv",
    "tc",
];

/// The init script. It prints `VIPD_VM_RESULT <rc>` last; the runner treats a boot
/// without that line as a failure.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root RUST_BACKTRACE=1
mount -t proc proc /proc
echo /sbin/modprobe > /proc/sys/kernel/modprobe
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/netns /var/run
ln -s /run/netns /var/run/netns
ip link set lo up
rc=0
while read -r m; do
  insmod "$m" || { echo "VIPD_VM_ERROR insmod $m failed"; rc=1; }
done < /vipd/modules
echo "VIPD_VM_READY $(uname -r)"
if [ $rc -eq 0 ] && [ -s /vipd/command ]; then
  echo "VIPD_VM_COMMAND $(cat /vipd/command)"
  sh -c "$(cat /vipd/command)" || rc=1
elif [ $rc -eq 0 ]; then
  for t in /vipd/tests/*; do
    echo "VIPD_VM_BINARY $(basename "$t")"
    "$t" --test-threads=1 $(cat /vipd/args) || rc=1
  done
fi
echo "VIPD_VM_RESULT $rc"
sync
poweroff -f
"#;

pub struct Inputs<'a> {
    pub kernel: &'a Kernel,
    pub tests: &'a [PathBuf],
    pub extra_bins: &'a [PathBuf],
    pub test_args: &'a [String],
    /// Run this command line instead of the tests (benchmarks).
    pub command: Option<&'a str>,
}

fn copy_exec(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst.parent().unwrap_or(Path::new("/")))?;
    fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Copies a test binary without its debug info: the image stays a fraction of the size
/// (and fits the VM's memory twice while the kernel unpacks it); panics keep their
/// file:line messages and backtraces their function names.
fn copy_stripped(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst.parent().unwrap_or(Path::new("/")))?;
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(dst)
        .arg(src)
        .status()
        .context("running strip (binutils)")?;
    if !status.success() {
        anyhow::bail!("strip --strip-debug {} failed: {status}", src.display());
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The shared libraries `bin` needs, as ldd resolves them on the host.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not found") {
        bail!("{}: missing libraries:\n{text}", bin.display());
    }
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

fn which(tool: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .with_context(|| format!("{tool} is not installed (run scripts/setup.sh)"))
}

/// Runs depmod for the extracted kernel if its package came without modules.dep, so
/// that the host's modprobe can resolve dependencies there.
fn ensure_modules_dep(kernel: &Kernel) -> Result<()> {
    if kernel.modules_dir().join("modules.dep").exists() {
        return Ok(());
    }
    let st = Command::new("depmod")
        .arg("-b")
        .arg(&kernel.root)
        .arg(&kernel.release)
        .status()
        .context("running depmod (kmod)")?;
    if !st.success() {
        bail!("depmod for kernel {} failed", kernel.name);
    }
    Ok(())
}

/// The module files of `names` and of everything they depend on (soft dependencies
/// included), dependencies first, as the host's modprobe resolves them in the extracted
/// kernel. Built-in modules have no file.
fn module_files<'n>(
    kernel: &Kernel,
    names: impl IntoIterator<Item = &'n str>,
) -> Result<Vec<PathBuf>> {
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for m in names {
        let out = Command::new("modprobe")
            .args(["-C", "/dev/null", "-d"])
            .arg(&kernel.root)
            .args(["-S", &kernel.release, "--show-depends", m])
            .output()?;
        if !out.status.success() {
            bail!(
                "kernel {}: no module {m}: {}",
                kernel.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `insmod <path> [options]`: options come from modprobe.d, not wanted here.
            if let Some(path) = line
                .strip_prefix("insmod ")
                .and_then(|r| r.split_whitespace().next())
            {
                if seen.insert(path.to_string()) {
                    files.push(PathBuf::from(path));
                }
            }
        }
    }
    Ok(files)
}

/// Copies a module of the extracted kernel to the same place under the image's
/// `/lib/modules/<release>/`, decompressing `.ko.xz` / `.ko.zst` (busybox insmod reads
/// plain ELF only; the names in modules.order end in `.ko`). Returns its path inside the
/// image.
fn add_module(kernel: &Kernel, src: &Path, stage: &Path) -> Result<String> {
    let rel = src
        .strip_prefix(kernel.modules_dir())
        .with_context(|| format!("{} is not in the kernel's module directory", src.display()))?
        .to_str()
        .context("module path is not UTF-8")?;
    let (rel, tool) = if let Some(b) = rel.strip_suffix(".xz") {
        (b, Some("xz"))
    } else if let Some(b) = rel.strip_suffix(".zst") {
        (b, Some("zstd"))
    } else {
        (rel, None)
    };
    let inside = format!("/lib/modules/{}/{rel}", kernel.release);
    let dst = stage.join(inside.trim_start_matches('/'));
    fs::create_dir_all(dst.parent().unwrap_or(stage))?;
    match tool {
        Some(tool) => {
            let out = Command::new(tool).args(["-dc"]).arg(src).output()?;
            if !out.status.success() {
                bail!("{tool} -d {} failed", src.display());
            }
            fs::write(&dst, out.stdout)?;
        }
        None => {
            fs::copy(src, &dst).with_context(|| format!("copying module {}", src.display()))?;
        }
    }
    Ok(inside)
}

/// Puts the kernel's modules into the image the way a host has them: every boot and
/// on-demand module (with its dependencies) under `/lib/modules/<release>/`, the
/// kernel's index files, and the indexes `depmod` builds from them, so that `modprobe`
/// (and the kernel's `request_module`) work inside the VM. Returns the boot modules' paths
/// inside the image, dependencies first, for the init script's insmod.
fn add_modules(kernel: &Kernel, stage: &Path) -> Result<Vec<String>> {
    ensure_modules_dep(kernel)?;
    let optional = OPTIONAL_MODULES
        .iter()
        .filter(|(_, option)| kernel.option(option) == Some("m"))
        .map(|(m, _)| *m);
    let on_demand = module_files(kernel, ON_DEMAND_MODULES.iter().copied().chain(optional))?;
    let boot = module_files(kernel, BOOT_MODULES.iter().copied())?;
    let mut boot_paths = Vec::new();
    for m in &boot {
        boot_paths.push(add_module(kernel, m, stage)?);
    }
    for m in on_demand.iter().filter(|m| !boot.contains(m)) {
        add_module(kernel, m, stage)?;
    }
    let dir = stage.join("lib/modules").join(&kernel.release);
    for index in MODULE_INDEXES {
        let src = kernel.modules_dir().join(index);
        if src.exists() {
            fs::copy(&src, dir.join(index))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    let st = Command::new("depmod")
        .arg("-b")
        .arg(stage)
        .arg(&kernel.release)
        .status()
        .context("running depmod (kmod) on the image")?;
    if !st.success() {
        bail!(
            "depmod on the image's modules of kernel {} failed",
            kernel.name
        );
    }
    Ok(boot_paths)
}

/// The host's kmod as the image's `/sbin/modprobe` (kmod acts on the name it is called
/// by), with the libraries it needs; returns them. The init script makes it the kernel's
/// module loader (`/proc/sys/kernel/modprobe`).
fn add_modprobe(stage: &Path) -> Result<BTreeSet<PathBuf>> {
    let kmod = fs::canonicalize(which("modprobe")?).context("resolving modprobe")?;
    copy_exec(&kmod, &stage.join("sbin/kmod"))?;
    std::os::unix::fs::symlink("kmod", stage.join("sbin/modprobe"))?;
    Ok(libraries(&kmod)?.into_iter().collect())
}

/// Builds the image in `work` and returns the cpio archive's path.
pub fn build(inputs: &Inputs<'_>, work: &Path) -> Result<PathBuf> {
    let stage = work.join("stage");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "etc",
        "var",
        "vipd/tests",
    ] {
        fs::create_dir_all(stage.join(d))?;
    }
    copy_exec(&which("busybox")?, &stage.join("bin/busybox"))?;
    fs::write(stage.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(stage.join("etc/group"), "root:x:0:\n")?;
    // For dig, which reads it even when given @server. Loopback only: the tests always
    // name their server.
    fs::write(stage.join("etc/resolv.conf"), "nameserver 127.0.0.1\n")?;

    let mut libs = add_modprobe(&stage)?;
    for tool in TOOLS {
        let src = which(tool)?;
        copy_exec(&src, &stage.join("usr/sbin").join(tool))?;
        libs.extend(libraries(&src)?);
    }
    for bin in inputs.extra_bins {
        let name = bin.file_name().context("binary without a name")?;
        copy_exec(bin, &stage.join("usr/bin").join(name))?;
        libs.extend(libraries(bin)?);
    }
    for test in inputs.tests {
        let name = test.file_name().context("test without a name")?;
        copy_stripped(test, &stage.join("vipd/tests").join(name))?;
        libs.extend(libraries(test)?);
    }
    for lib in &libs {
        let dst = stage.join(lib.strip_prefix("/").unwrap_or(lib));
        copy_exec(
            &fs::canonicalize(lib).with_context(|| format!("resolving {}", lib.display()))?,
            &dst,
        )?;
    }

    let mut order = String::new();
    for m in add_modules(inputs.kernel, &stage)? {
        order.push_str(&m);
        order.push('\n');
    }
    fs::write(stage.join("vipd/modules"), order)?;
    fs::write(stage.join(KERNEL_CONFIG), &inputs.kernel.config)?;
    fs::write(stage.join("vipd/args"), inputs.test_args.join(" "))?;
    fs::write(
        stage.join("vipd/command"),
        inputs.command.unwrap_or_default(),
    )?;
    fs::write(stage.join("init"), INIT)?;
    fs::set_permissions(stage.join("init"), fs::Permissions::from_mode(0o755))?;

    let cpio = work.join("initramfs.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . -print0 | cpio --null -o -H newc --quiet > \"$0\"")
        .arg(&cpio)
        .current_dir(&stage)
        .status()?;
    if !status.success() {
        bail!("cpio failed");
    }
    Ok(cpio)
}
