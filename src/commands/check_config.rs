//! `deadpool check-config`: validates everything it can without changing anything, and
//! prints the worst-case duration of one tick.

use std::path::Path;

use anyhow::Result;

use crate::config::{self, Config, format_duration};
use crate::error::Outcome;

pub fn run(dir: &Path) -> Result<Outcome> {
    let config = Config::load(dir)?;
    let mut warnings = Vec::new();

    // No step type of this build runs over SSH yet, so the SSH files are only noted.
    let ssh_files = [
        (
            "ssh.identity_file",
            config.ssh.identity_file.as_deref(),
            true,
        ),
        (
            "ssh.password_file",
            config.ssh.password_file.as_deref(),
            true,
        ),
        (
            "ssh.known_hosts",
            Some(config.ssh.known_hosts.as_path()),
            false,
        ),
    ];
    for (key, file, secret) in ssh_files {
        let Some(file) = file else { continue };
        if !file.exists() {
            warnings.push(format!(
                "{key}: {} does not exist; supply it before adding SSH steps",
                file.display()
            ));
        } else if let (true, Err(e)) = (secret, config::check_secret_file(file)) {
            warnings.push(format!("{key}: {e}"));
        }
    }
    if let Some(parent) = config.state_dir.parent()
        && !config.state_dir.exists()
        && !parent.exists()
    {
        {
            warnings.push(format!(
                "state_dir {}: neither it nor its parent exists; the first tick creates both (0700)",
                config.state_dir.display()
            ));
        }
    }
    if config.pools.is_empty() {
        warnings.push(format!(
            "no pools: add one file per pool under {}",
            config.dir.join("pools").display()
        ));
    }
    let watching = config.worst_case_watching();
    if watching > config.tick_interval {
        warnings.push(format!(
            "a tick without a failover may take up to {} (monitor timeout + every readiness check's timeout), longer than tick_interval {}; ticks never overlap, they come late",
            format_duration(watching),
            format_duration(config.tick_interval)
        ));
    }

    print!("{}", config::summary(&config));
    println!(
        "worst-case tick duration: {} without a failover, {} with one (systemd's TimeoutStartSec must be longer)",
        format_duration(watching),
        format_duration(config.worst_case_tick())
    );
    for w in &warnings {
        println!("warning: {w}");
    }
    println!(
        "OK - configuration is valid ({} pool(s), {} warning(s))",
        config.pools.len(),
        warnings.len()
    );
    Ok(Outcome::Done)
}
