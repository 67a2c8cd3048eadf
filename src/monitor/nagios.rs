//! The `nagios` monitor: any Nagios plugin, run without a shell. Exit 0 (OK) and 1 (WARNING)
//! mean up; 2, 3, any other code, a signal or the timeout mean down.

use std::time::Duration;

use super::Health;
use crate::model::Role;
use crate::remote::{self, Exit};

/// The plugin's argv with `{host}`, `{port}`, `{pool}` and `{role}` filled in.
pub fn argv(argv: &[String], port: Option<u16>, host: &str, pool: &str, role: Role) -> Vec<String> {
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    argv.iter()
        .map(|a| {
            a.replace("{host}", host)
                .replace("{port}", &port)
                .replace("{pool}", pool)
                .replace("{role}", role.as_str())
        })
        .collect()
}

pub fn check(
    argv: &[String],
    port: Option<u16>,
    host: &str,
    pool: &str,
    role: Role,
    timeout: Duration,
) -> (Health, String) {
    let argv = self::argv(argv, port, host, pool, role);
    let out = remote::run_local(&argv, &[], timeout);
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
