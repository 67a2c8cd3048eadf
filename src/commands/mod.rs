//! One file per subcommand; this file dispatches and holds what several of them share.

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
mod tick;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{Error, Outcome};

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

/// Who asked for a change: the person behind sudo, else the user.
pub fn actor() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The start of every command that changes a pool by hand: the instance lock (waiting a
/// bounded time for a running tick) and the database, both held for the whole command.
pub fn lock_for_change(config: &Config) -> Result<(crate::state::Lock, crate::state::State)> {
    use crate::state::{Lock, State};
    let wait = config.lock_wait();
    let Some(lock) = Lock::acquire(&config.state_dir, wait)? else {
        return Err(Error::Failed(format!(
            "{} still holds the instance lock after {:.0}s; nothing changed, try again",
            Lock::holder(&config.state_dir),
            wait.as_secs_f64()
        ))
        .into());
    };
    let state = State::open(&config.state_dir)?;
    Ok((lock, state))
}

/// Asks on the terminal; without one, `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "{question}: there is no terminal to confirm on; add --yes"
        ))
        .into());
    }
    eprint!("{question} Type `yes` to go on: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "yes" | "y"))
}
