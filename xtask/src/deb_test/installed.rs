//! Checks of the installed package inside the test root: the CLI, the default config, the
//! man pages, the completions of each shell, and the systemd unit.

use anyhow::{ensure, Result};

use super::{root::Root, Tally};
use crate::deb::Package;

/// zsh and fish: a syntax check of the completion file, and a shell that finds it by
/// itself and prints what shows it loaded (fish keeps its history and variables under
/// $HOME: a scratch one).
const SHELLS: &[(&str, &str, &str, &str)] = &[
    (
        "zsh",
        "zsh -n /usr/share/zsh/vendor-completions/_vipd",
        "zsh -fc 'autoload -Uz compinit && compinit -u -D && print -r -- $_comps[vipd]'",
        "_vipd",
    ),
    (
        "fish",
        "fish --no-execute /usr/share/fish/vendor_completions.d/vipd.fish",
        "HOME=/tmp/fish-home fish -c 'complete -C \"vipd ch\"'",
        "check",
    ),
];

/// Runs `script` in the root and fails unless its output contains `want`.
fn expect(root: &Root, script: &str, want: &str) -> Result<()> {
    let out = root.sh(script)?;
    ensure!(out.contains(want), "`{script}` printed no {want:?}:\n{out}");
    Ok(())
}

pub fn checks(t: &mut Tally, root: &Root, package: &Package) -> Result<()> {
    let upstream = package
        .version
        .rsplit_once('-')
        .map_or(package.version.as_str(), |(u, _)| u);
    t.check("vipd --version", || {
        expect(root, "vipd --version", &format!("vipd {upstream}"))
    })?;
    t.check("the installed config passes vipd check", || {
        expect(
            root,
            "vipd check --config-only --config /etc/vipd/vipd.toml",
            "ok: 0 services, 0 backends",
        )
    })?;
    t.check("man pages render and are indexed", || {
        expect(root, "man -P cat vipd", "vipd-check(1)")?;
        expect(root, "man -P cat vipd-run", "--state-file")?;
        // whatis reads the NAME sections that man-db's trigger indexed during dpkg -i.
        expect(root, "whatis vipd-check", "vipd-check (1)")
    })?;
    t.check("bash completes vipd's subcommands", || {
        let script = "bash -c '. /usr/share/bash-completion/completions/vipd && complete -p vipd \
                      && COMP_WORDS=(vipd ch) && COMP_CWORD=1 && _vipd vipd ch vipd \
                      && echo \"reply: ${COMPREPLY[*]}\"'";
        expect(root, script, "reply: check")
    })?;
    for (name, syntax, load, want) in SHELLS {
        t.check(
            &format!("{name} loads the completion from its vendor directory"),
            || {
                root.sh(syntax)?;
                expect(root, load, want)
            },
        )?;
    }
    t.check("systemd-analyze verify accepts the unit, enabled", || {
        // On a scratch /run: systemd-analyze leaves a stamp in /run/systemd.
        let out = root.sh_on_scratch_run("systemd-analyze verify vipd.service")?;
        ensure!(out.trim().is_empty(), "systemd-analyze verify:\n{out}");
        expect(root, "systemctl is-enabled vipd.service", "enabled")
    })?;
    Ok(())
}
