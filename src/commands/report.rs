//! `deadpool report`: the status tree from the database alone (no network), as a readable
//! tree, a Nagios line, or JSON.

use std::path::Path;

use anyhow::Result;

use crate::cli::ReportArgs;
use crate::config::Config;
use crate::error::Outcome;
use crate::report;
use crate::state::{State, now_ms};

pub fn run(dir: &Path, args: &ReportArgs) -> Result<Outcome> {
    let config = Config::load(dir)?;
    if let Some(name) = &args.pool {
        config.pool(name)?;
    }
    let state = State::open_read_only(&config.state_dir)?;
    let tree = report::build(&config, state.as_ref(), args.pool.as_deref(), now_ms())?;
    if args.nagios {
        print!("{}", report::nagios(&tree));
        return Ok(Outcome::Code(tree.status.exit_code()));
    }
    if args.prometheus {
        print!("{}", report::prometheus(&tree, report::Exposition::Report));
        return Ok(Outcome::Done);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tree)?);
    } else {
        print!("{}", report::full(&tree, colour()));
    }
    Ok(Outcome::Done)
}

/// Colour on a terminal, unless `NO_COLOR` is set (<https://no-color.org>) or `TERM=dumb`.
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}
