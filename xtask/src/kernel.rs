//! The VM kernels: Debian packages extracted into the cache by scripts/setup.sh.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The kernel matrix: cache name and where it comes from.
pub const MATRIX: &[(&str, &str)] = &[
    ("6.1", "Debian bookworm linux-image-amd64"),
    ("6.12", "Debian bookworm-backports linux-image-amd64"),
];

/// Kernel options every VM test relies on.
const REQUIRED: &[(&str, &[&str])] = &[
    ("CONFIG_IP_VS", &["m", "y"]),
    ("CONFIG_KPROBES", &["y"]),
    ("CONFIG_BPF_SYSCALL", &["y"]),
    ("CONFIG_DEBUG_INFO_BTF", &["y"]),
    ("CONFIG_DEBUG_INFO_BTF_MODULES", &["y"]),
    ("CONFIG_NET_NS", &["y"]),
    ("CONFIG_VETH", &["m", "y"]),
    ("CONFIG_DUMMY", &["m", "y"]),
    ("CONFIG_SERIAL_8250_CONSOLE", &["y"]),
];

pub struct Kernel {
    pub name: String,
    pub release: String,
    pub vmlinuz: PathBuf,
    /// The extracted package: `lib/modules/<release>` and `boot/config-<release>`.
    pub root: PathBuf,
    /// The kernel's build configuration (`boot/config-<release>`).
    pub config: String,
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("VIPD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/vipd")
        })
}

impl Kernel {
    /// Finds kernel `name` in the cache and checks it has what the tests need.
    pub fn find(name: &str) -> Result<Self> {
        let dir = cache_dir().join("kernels").join(name);
        if !dir.join("ready").exists() {
            bail!(
                "kernel {name} is not in {} (run scripts/setup.sh)",
                dir.display()
            );
        }
        let release = std::fs::read_to_string(dir.join("release"))?
            .trim()
            .to_string();
        let root = dir.join("root");
        let config_path = root.join("boot").join(format!("config-{release}"));
        let config = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        for (option, allowed) in REQUIRED {
            match option_in(&config, option) {
                Some(v) if allowed.contains(&v) => {}
                other => bail!(
                    "kernel {name} ({release}): {option} is {}, the VM tests need {}",
                    other.unwrap_or("not set"),
                    allowed.join(" or ")
                ),
            }
        }
        Ok(Self {
            name: name.to_string(),
            release,
            vmlinuz: dir.join("vmlinuz"),
            root,
            config,
        })
    }

    /// The value of a build option (`m`, `y`, a string...), None when it is not set.
    pub fn option(&self, option: &str) -> Option<&str> {
        option_in(&self.config, option)
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

fn option_in<'c>(config: &'c str, option: &str) -> Option<&'c str> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(option).and_then(|r| r.strip_prefix('=')))
}
