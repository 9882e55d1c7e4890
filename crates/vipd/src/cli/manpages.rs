//! `vipd manpages DIR` (hidden; for packaging): writes the man pages made from the CLI's
//! own definition into DIR: `vipd.1`, and `vipd-<subcommand>.1` for each visible
//! subcommand. Existing pages of those names are replaced.

use std::{fs, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::CommandFactory;

#[derive(clap::Args)]
pub struct Args {
    /// The directory to write the pages into (created if missing).
    dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Building fills in what the pages show: each subcommand's `vipd <name>` usage, its
    // `vipd-<name>` title, the global flags it inherits and vipd's version in its footer.
    let mut cmd = super::Cli::command().propagate_version(true);
    cmd.build();
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let subcommands = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect::<Vec<_>>();
    write_page(cmd, &args.dir)?;
    for sub in subcommands {
        write_page(sub, &args.dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(cmd: clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}
