//! `deadpool check-config`: validates everything it can without changing anything, and
//! prints the worst-case duration of one tick.

use std::path::Path;

use anyhow::Result;

use crate::chain;
use crate::cli::{CheckConfigArgs, Role};
use crate::config::{self, Config, Pool, StepKind, format_duration};
use crate::model::Status;
use crate::monitor::{self, Health};

use crate::error::Outcome;

pub fn run(dir: &Path, args: &CheckConfigArgs) -> Result<Outcome> {
    let config = Config::load(dir)?;
    let mut warnings = Vec::new();
    let mut probes = Vec::new();
    if !args.offline {
        // Probe in the direction the next failover would take.
        let state = crate::state::State::open_read_only(&config.state_dir)
            .ok()
            .flatten();
        for pool in &config.pools {
            let rec = state
                .as_ref()
                .and_then(|s| s.pool(&pool.name).ok().flatten());
            let active = rec.map_or(Role::Primary, |r| r.active);
            probe(pool, active, &mut probes, &mut warnings);
        }
    }

    // SSH files: errors where some step or observer logs in with them, notes otherwise.
    let used = config.ssh_in_use();
    let in_use = !used.is_empty();
    let settings: Vec<(String, &config::SshSettings)> = if used.is_empty() {
        vec![("[ssh]".to_string(), &config.ssh)]
    } else {
        used
    };
    for (who, ssh) in &settings {
        let mut problems = Vec::new();
        if let config::SshAuth::Key(key) = &ssh.auth {
            if !key.exists() {
                problems.push(format!(
                    "{who}: identity_file {} does not exist; create it with `ssh-keygen -t ed25519 -N '' -f {}` and install its .pub on the clients",
                    key.display(),
                    key.display()
                ));
            } else if let Err(e) = config::check_secret_file(key) {
                problems.push(format!("{who}: identity_file: {e}"));
            }
        }
        if !ssh.known_hosts.exists() {
            problems.push(format!(
                "{who}: known_hosts {} does not exist; add each client's key with `ssh-keyscan -t ed25519 HOST >> {}` after checking it",
                ssh.known_hosts.display(),
                ssh.known_hosts.display()
            ));
        }
        if !in_use {
            warnings.extend(
                problems
                    .into_iter()
                    .map(|p| format!("{p} (needed once a step uses SSH)")),
            );
        } else if let Some(first) = problems.into_iter().next() {
            return Err(crate::error::Error::Config(first).into());
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
    for pool in &config.pools {
        if pool.monitor.timeout > config.tick_interval {
            warnings.push(format!(
                "pool {}: the monitor timeout {} is longer than tick_interval {}: while its server hangs, its checks come every {} instead",
                pool.name,
                format_duration(pool.monitor.timeout),
                format_duration(config.tick_interval),
                format_duration(pool.monitor.timeout)
            ));
        }
    }

    let mut notes = Vec::new();
    for pool in &config.pools {
        step_notes(pool, &mut notes, &mut warnings);
    }

    print!("{}", config::summary(&config));
    for line in &notes {
        println!("{line}");
    }
    for line in &probes {
        println!("{line}");
    }
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

/// Read-only probes of a pool's servers: each server through the monitor, and the preflight
/// toward the standby of each `mysql_promote` and `redis_promote` step (logins, grants,
/// replication), `dns` step (the zone's SOA, the TSIG key, the record) and `haproxy` step
/// (each proxy's level, backend and servers).
fn probe(pool: &Pool, active: Role, lines: &mut Vec<String>, warnings: &mut Vec<String>) {
    for (role, check) in [Role::Primary, Role::Secondary]
        .into_iter()
        .zip(monitor::check_both(pool))
    {
        let line = format!(
            "pool {}: {} {}: {}",
            pool.name,
            role.as_str(),
            pool.address(role),
            check.message
        );
        match check.health {
            Health::Up => lines.push(line),
            Health::Degraded | Health::Down => warnings.push(line),
        }
    }
    for (index, step) in pool.steps.iter().enumerate() {
        // Preflights that read only (a DNS update whose one change is a no-op counts).
        if !matches!(
            step.kind,
            StepKind::MysqlPromote(_)
                | StepKind::RedisPromote(_)
                | StepKind::Dns(_)
                | StepKind::Haproxy(_)
        ) {
            continue;
        }
        let ctx = chain::context(pool, index, active, active.other(), true);

        for h in crate::protocol::run(crate::protocol::Action::Preflight, &ctx) {
            let line = format!(
                "pool {}: step `{}` preflight on {}: {}",
                pool.name, step.name, h.host, h.message
            );
            if h.status == Status::Ok {
                lines.push(line)
            } else {
                warnings.push(line)
            }
        }
    }
}

/// What the `dns` and `haproxy` steps will reach, which a config alone does not show, and
/// what is missing for them on this host.
fn step_notes(pool: &Pool, lines: &mut Vec<String>, warnings: &mut Vec<String>) {
    for step in &pool.steps {
        let at = format!("pool {}: step `{}`", pool.name, step.name);
        match &step.kind {
            StepKind::Dns(d) => {
                let verify = if d.verify_servers.is_empty() {
                    String::new()
                } else {
                    let servers: Vec<String> = d
                        .verify_servers
                        .iter()
                        .map(|(h, p)| format!("{h}:{p}"))
                        .collect();
                    format!("; readiness also asks {}", servers.join(", "))
                };
                lines.push(format!(
                    "{at} (dns): {} {} at {}:{} (zone {}), TSIG key {} ({}), TTL {}s (warning above {}s); primary -> {}, secondary -> {}{verify}",
                    d.service_host_name,
                    d.record.as_str(),
                    d.server,
                    d.port,
                    d.zone,
                    d.tsig.name,
                    d.tsig.algorithm,
                    d.ttl,
                    d.max_ttl,
                    d.values.primary,
                    d.values.secondary,
                ));
                for tool in ["nsupdate", "dig"] {
                    if !in_path(tool) {
                        warnings.push(format!(
                            "{at}: `{tool}` is not in $PATH; install bind9-dnsutils"
                        ));
                    }
                }
            }
            StepKind::Haproxy(h) => {
                let sockets: Vec<String> = h
                    .sockets
                    .iter()
                    .map(|s| match s.ssh_host() {
                        Some(host) => format!("{s} (through ssh {}@{host})", h.ssh.user),
                        None => s.to_string(),
                    })
                    .collect();
                lines.push(format!(
                    "{at} (haproxy): backend {}, primary -> server {}, secondary -> server {}, the server left goes to {}; {}",
                    h.backend,
                    h.servers.primary,
                    h.servers.secondary,
                    h.standby_state.as_str(),
                    sockets.join(", ")
                ));
                for socket in &h.sockets {
                    if let config::HaproxySocket::Unix(path) = socket
                        && !Path::new(path).exists()
                    {
                        warnings.push(format!(
                            "{at}: the stats socket {path} does not exist on this host (is HAProxy running, with `stats socket {path} level admin`?)"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
