//! deadpool: single-use failover for a primary and its standby.
//!
//! `main` only parses the command line, calls [`commands::run`], and turns the outcome into an exit code.

mod chain;
mod children;
mod civil;
mod cli;
mod cluster;
mod cluster_round;
mod commands;
mod config;
mod error;
mod failover;
#[cfg(test)]
mod fuzz;
mod hostsfile;
mod known_hosts;
mod log;
mod lost;
mod model;
mod monitor;
mod mysql;
mod net;
mod opinion;
mod orphans;
mod output;
mod position;
mod postgres;
mod protocol;
mod readiness;
mod redis;
mod remote;
mod report;
mod round;
mod rules;
mod settings;
mod ssh;
mod state;
mod strict;
mod text;
mod timer;
mod tls;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => return error::usage_exit(err, cli::wants_nagios(&args)),
    };
    log::init(cli.verbose, cli.quiet);
    let nagios = cli.is_nagios();
    match commands::run(cli) {
        Ok(code) => code.into(),
        Err(err) => error::report(&err, nagios),
    }
}
