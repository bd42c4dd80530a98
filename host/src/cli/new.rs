//! `bazaar new NAME [--lang rust|python]`: scaffolds a service.

use std::path::PathBuf;

/// Arguments of `bazaar new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The service's name (a-z, 0-9, `-`, `_`).
    pub name: String,
    /// The language: `rust` (the default) or `python`.
    #[arg(long, default_value = "rust")]
    pub lang: String,
    /// Where to create it; default `./NAME`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Writes the scaffold.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bazaar new {}` is not built yet ({})", args.name, args.lang)
}
