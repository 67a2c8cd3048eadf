//! One file per subcommand; this file dispatches. What the commands that change a pool by
//! hand share is in `shared`.

mod check_config;
mod completions;
mod history;
mod hosts;
mod init;
mod man;
mod pause;
mod promote;
mod report;
mod reset;
mod shared;
mod tick;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::Outcome;

pub fn run(cli: Cli) -> Result<Outcome> {
    let dir = Config::locate(cli.config.as_deref());
    match cli.command {
        Command::Init(args) => init::run(&dir, &args),
        Command::Hosts(args) => hosts::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Man => man::run(),

        Command::CheckConfig(args) => check_config::run(&dir, &args),
        Command::Report(args) => report::run(&dir, &args),
        Command::Tick(args) => tick::run(&Config::load(&dir)?, &args),
        Command::Promote(args) => promote::run(&Config::load(&dir)?, &args),
        Command::Reset(args) => reset::run(&Config::load(&dir)?, &args),
        Command::History(args) => history::run(&Config::load(&dir)?, &args),
        Command::Pause(args) => pause::pause(&Config::load(&dir)?, &args),
        Command::Resume(args) => pause::resume(&Config::load(&dir)?, &args),
    }
}
