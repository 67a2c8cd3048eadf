//! The `nagios` monitor: any Nagios plugin, run without a shell. Exit 0 (OK) and 1 (WARNING)
//! mean up; 2, 3, any other code, a signal or the timeout mean down.

use std::path::Path;

use serde::Deserialize;

use super::{Facts, Health, Kind, ObserverProbe, Server};
use crate::config::load::{NAGIOS_PLUGIN_DIRS, check_placeholders, resolve_program};
use crate::error::Problem;
use crate::remote::{self, Exit};

pub const TYPE: &str = "nagios";

/// What `command` may hold, filled in for each server ([`Nagios::filled`]).
const PLACEHOLDERS: &[&str] = &["host", "port", "pool", "role"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    command: Option<String>,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Nagios {
    /// The plugin's argv with `{host}`, `{port}`, `{pool}`, `{role}` still in it; the
    /// program resolved to a path.
    pub argv: Vec<String>,
    /// What `{port}` becomes, and what observers check; optional.
    pub port: Option<u16>,
}

/// Validates the keys of a `nagios` monitor beyond the common ones.
pub fn load(dir: &Path, table: toml::Table) -> Result<Nagios, Problem> {
    let raw: Raw = super::parse(table, TYPE)?;
    let command = raw
        .command
        .as_deref()
        .ok_or(Problem::at("command", "a `nagios` monitor needs a command"))?;
    let mut argv = crate::text::split_words(command).map_err(|e| Problem::at("command", e))?;
    check_placeholders(command, PLACEHOLDERS).map_err(|e| Problem::at("command", e))?;
    let Some(program) = argv.first() else {
        return Err(Problem::at(
            "command",
            "expected a command, got an empty string",
        ));
    };
    let resolved =
        resolve_program(dir, program, NAGIOS_PLUGIN_DIRS).map_err(|e| Problem::at("command", e))?;
    argv[0] = resolved.to_string_lossy().into_owned();
    Ok(Nagios {
        argv,
        port: raw.port,
    })
}

impl Kind for Nagios {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn port(&self) -> Option<u16> {
        self.port
    }

    /// The same plugin, run on the observer.
    fn observer_probe(&self, server: &Server) -> ObserverProbe {
        ObserverProbe::Plugin(self.filled(server))
    }

    fn check(&self, server: &Server) -> (Health, String, Option<Facts>) {
        let (health, message) = run(&self.filled(server), server.timeout);
        (health, message, None)
    }
}

impl Nagios {
    /// The plugin's argv with `{host}`, `{port}`, `{pool}` and `{role}` filled in.
    fn filled(&self, server: &Server) -> Vec<String> {
        let port = self.port.map(|p| p.to_string()).unwrap_or_default();
        self.argv
            .iter()
            .map(|a| {
                a.replace("{host}", server.host)
                    .replace("{port}", &port)
                    .replace("{pool}", server.pool)
                    .replace("{role}", server.role.as_str())
            })
            .collect()
    }
}

/// Runs the plugin (placeholders filled in) and reads its exit code and first line.
fn run(argv: &[String], timeout: std::time::Duration) -> (Health, String) {
    let out = remote::run_local(argv, &[], timeout);
    let first = crate::text::first_line(&out.stdout);
    let health = match out.exit {
        Exit::Code(0) => Health::Up,
        Exit::Code(1) => Health::Degraded,
        _ => Health::Down,
    };
    let message = match (&out.exit, first.is_empty()) {
        (Exit::Code(0 | 1), false) => first,
        (Exit::Code(0 | 1), true) => format!("plugin said nothing ({})", out.describe_exit()),
        (_, false) => format!("{first} ({})", out.describe_exit()),
        (_, true) => out.describe_exit(),
    };
    (health, message)
}
