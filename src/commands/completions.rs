//! `deadpool completions SHELL`: prints a completion script generated from the clap
//! definition in `cli.rs`, so it never falls behind the real options.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Outcome;

pub fn run(args: &CompletionsArgs) -> Result<Outcome> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    // Into a buffer first: clap_complete panics on a write error such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script to stdout")?;
    Ok(Outcome::Done)
}
