//! `deadpool check-config`: validates everything it can without changing anything, and
//! prints the worst-case duration of one tick.

use std::path::Path;

use anyhow::Result;

use crate::chain;
use crate::cli::CheckConfigArgs;
use crate::config::{self, Config, Pool, format_duration};
use crate::model::Role;
use crate::model::Status;
use crate::monitor::{self, Health};

use crate::error::{ConfigError, Outcome};

pub fn run(dir: &Path, args: &CheckConfigArgs) -> Result<Outcome> {
    let result = check(dir, args);
    if args.json
        && let Err(e) = &result
    {
        let doc = serde_json::json!({ "valid": false, "error": format!("{e:#}") });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    result
}

/// One read-only probe of a server or a promote step: its line, and whether it was OK.
#[derive(Debug, serde::Serialize)]
struct Probe {
    pool: String,
    status: Status,
    message: String,
}

fn check(dir: &Path, args: &CheckConfigArgs) -> Result<Outcome> {
    let config = Config::load(dir)?;
    let timer = timer_line(&config)?;
    let mut warnings = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let mut cluster_line = None;
    let mut replication_notes = Vec::new();
    if !args.offline {
        // Probe in the direction the next failover would take.
        let state = crate::state::State::open_read_only(&config.state_dir)
            .ok()
            .flatten();
        for pool in &config.pools {
            let rec = state
                .as_ref()
                .and_then(|s| s.pool(&pool.name).ok().flatten());
            let active = rec.map_or(Role::PRIMARY, |r| r.active);
            probe(pool, active, &mut probes, &mut replication_notes);
        }
        if let Some(cluster) = &config.cluster {
            match crate::cluster::probe(cluster) {
                Ok(line) => cluster_line = Some(line),
                Err(e) => warnings.push(format!("[cluster]: {e:#}")),
            }
        }
    }

    check_ssh(&config, &mut warnings)?;
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
    pool_warnings(&config, &mut warnings);

    let mut notes = Vec::new();
    match timer {
        Some(Ok(note)) => notes.push(note),
        Some(Err(warning)) => warnings.push(warning),
        None => {}
    }
    notes.extend(cluster_line);
    notes.extend(replication_notes);
    for pool in &config.pools {
        monitor_notes(pool, &mut notes, &mut warnings);
        step_notes(pool, &mut notes, &mut warnings);
    }

    // Probes that found a problem come first among the warnings.
    let failed = probes
        .iter()
        .filter(|p| p.status != Status::Ok)
        .map(|p| format!("pool {}: {}", p.pool, p.message));
    let warnings: Vec<String> = failed.chain(warnings).collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&config, &notes, &probes, &warnings))?
        );
        return Ok(Outcome::Done);
    }
    print!("{}", config::summary(&config));
    for line in &notes {
        println!("{line}");
    }
    for p in probes.iter().filter(|p| p.status == Status::Ok) {
        println!("pool {}: {}", p.pool, p.message);
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

/// The systemd timer that runs this config's ticks, when its unit files are found: an error
/// when it is so slow that every tick is a gap, a warning (`Err`) when its period is not
/// `tick_interval`'s, a note (`Ok`) otherwise.
fn timer_line(config: &Config) -> Result<Option<Result<String, String>>> {
    use crate::timer::Fit;
    let Some(timer) = crate::timer::find(&config.dir) else {
        return Ok(None);
    };
    Ok(Some(
        match crate::timer::fit(&timer, config.tick_interval) {
            Fit::Never(why) => {
                return Err(crate::error::Error::Config(ConfigError::plain(why)).into());
            }
            Fit::Off(why) => Err(why),
            Fit::Same => Ok(format!(
                "{}: a tick every {} ({}= in {}), as tick_interval",
                timer.name,
                format_duration(timer.period),
                timer.key,
                timer.file.display()
            )),
        },
    ))
}

/// SSH files: errors where some step or observer logs in with them, warnings otherwise.
fn check_ssh(config: &Config, warnings: &mut Vec<String>) -> Result<()> {
    let used = config.ssh_in_use();
    let in_use = !used.is_empty();
    let settings: Vec<(String, &config::SshSettings)> = if used.is_empty() {
        vec![("[ssh]".to_string(), &config.ssh)]
    } else {
        used
    };
    for (who, ssh) in &settings {
        let mut problems = Vec::new();
        if let config::SshAuth::Key(key) = &ssh.auth
            && !key.exists()
        {
            problems.push(format!(
                "identity_file {} does not exist; create it with `ssh-keygen -t ed25519 -N '' -f {}` and install its .pub on the clients",
                key.display(),
                key.display()
            ));
        }
        if let Err(p) = config::load::check_ssh_files(ssh) {
            problems.push(format!("{}: {}", p.key.unwrap_or_default(), p.text));
        }
        if !ssh.known_hosts.exists() {
            problems.push(format!(
                "known_hosts {} does not exist; add each client's key with `ssh-keyscan -t ed25519 HOST >> {}` after checking it",
                ssh.known_hosts.display(),
                ssh.known_hosts.display()
            ));
        }
        let mut problems = problems
            .into_iter()
            .map(|p| ConfigError::plain(p).in_table(who.as_str(), None));
        if !in_use {
            warnings.extend(problems.map(|p| format!("{p} (needed once a step uses SSH)")));
        } else if let Some(first) = problems.next() {
            return Err(crate::error::Error::Config(first).into());
        }
    }
    Ok(())
}

/// Warnings about each pool's settings: TLS that checks no certificate, a monitor slower
/// than the tick.
fn pool_warnings(config: &Config, warnings: &mut Vec<String>) {
    for pool in &config.pools {
        if tls_unverified(pool) {
            warnings.push(format!(
                "pool {}: tls verify = \"none\": the traffic is encrypted, but whoever answers is believed, and the passwords go to them; use verify = \"full\" with ca_file",
                pool.name
            ));
        }
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
}

/// Read-only probes of a pool's servers: each server through the monitor, and the preflight
/// toward the standby of each step whose type asks for it (`mysql_promote` and
/// `redis_promote`: logins, grants, replication; `dns`: the zone's SOA, the TSIG key, the
/// record; `haproxy`: each proxy's level, backend and servers).
fn probe(pool: &Pool, active: Role, probes: &mut Vec<Probe>, notes: &mut Vec<String>) {
    for ((role, _), check) in pool.servers().roles().zip(monitor::check_all(pool)) {
        let durability = check.facts.as_ref().and_then(|f| f.durability.as_ref());
        if role == active
            && let Some(note) = durability.and_then(|d| asynchronous_note(pool, active, d))
        {
            notes.push(note);
        }
        probes.push(Probe {
            pool: pool.name.clone(),
            status: match check.health {
                Health::Up => Status::Ok,
                Health::Degraded | Health::Down => Status::Warning,
            },
            message: format!(
                "{} {}: {}",
                role.as_str(),
                pool.address(role),
                check.message
            ),
        });
    }
    for (index, step) in pool.steps.iter().enumerate() {
        if !step.kind.get().probed_by_check_config() {
            continue;
        }
        let ctx = crate::protocol::Context {
            dry_run: true,
            ..chain::context(pool, index, active, pool.next_standby(active))
        };

        for h in crate::protocol::run(crate::protocol::Action::Preflight, &ctx) {
            probes.push(Probe {
                pool: pool.name.clone(),
                status: if h.status == Status::Ok {
                    Status::Ok
                } else {
                    Status::Warning
                },
                message: format!(
                    "step `{}` preflight on {}: {}",
                    step.name, h.host, h.message
                ),
            });
        }
    }
}

/// The note for a pool whose active server acknowledges writes before a standby has them
/// (pure, for tests): a failover loses those, and no step salvages them yet.
fn asynchronous_note(pool: &Pool, active: Role, d: &monitor::Durability) -> Option<String> {
    (d.guaranteed == Some(false)).then(|| {
        format!(
            "pool {}: replication from {} is asynchronous ({}): writes it acknowledged that no standby had received yet are lost at a failover, and deadpool does not salvage them; it records how much a failover lost in `history` and `report`",
            pool.name,
            pool.address(active),
            d.how
        )
    })
}

/// What the pool's monitor type says beyond the checks of both servers.
fn monitor_notes(pool: &Pool, lines: &mut Vec<String>, warnings: &mut Vec<String>) {
    let notes = pool.monitor.kind.get().notes();
    let at = format!("pool {}: monitor", pool.name);
    lines.extend(notes.lines.iter().map(|l| format!("{at}: {l}")));
    warnings.extend(notes.warnings.iter().map(|w| format!("{at}: {w}")));
}

/// Whether the pool's monitor or a promoting step talks TLS without checking certificates.
fn tls_unverified(pool: &Pool) -> bool {
    let unverified =
        |tls: Option<&config::Tls>| tls.is_some_and(|t| t.verify == crate::tls::Verify::None);
    unverified(pool.monitor.tls()) || pool.steps.iter().any(|s| unverified(s.kind.get().tls()))
}

/// `check-config --json` (schema in the README): the validated settings, each pool and its
/// chain, the probes, the worst-case tick and the warnings.
fn json(
    config: &Config,
    notes: &[String],
    probes: &[Probe],
    warnings: &[String],
) -> serde_json::Value {
    use serde_json::json;
    let secs = |d: std::time::Duration| d.as_secs_f64();
    let pools: Vec<serde_json::Value> = config
        .pools
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "primary": p.primary(),
                "secondary": p.servers[1],
                "standbys": p.servers[1..],
                "never_promote": p.never_promote.iter().map(|r| p.address(*r)).collect::<Vec<_>>(),
                "max_promote_lag_s": secs(p.max_promote_lag),
                "confirm_from_replicas": p.confirm_from_replicas,
                "max_failed_checks": p.max_failed_checks,
                "down_for_s": p.down_for.map(secs),
                "recheck_interval_s": p.down_for.map(|_| secs(p.recheck_interval)),
                "monitor": {
                    "type": p.monitor.kind.type_name(),
                    "timeout_s": secs(p.monitor.timeout),
                    "confirm_from": p.monitor.confirm_from.iter().map(|h| h.name()).collect::<Vec<_>>(),
                },
                "steps": p.steps.iter().enumerate().map(|(i, s)| json!({
                    "index": i + 1,
                    "name": s.name,
                    "type": s.type_name(),
                    "timeout_s": secs(s.timeout),
                    "on_failure": match s.on_failure {
                        config::OnFailure::Abort => "abort",
                        config::OnFailure::Continue => "continue",
                    },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "valid": true,
        "config_dir": config.dir.display().to_string(),
        "state_dir": config.state_dir.display().to_string(),
        "tick_interval_s": secs(config.tick_interval),
        "system_check_interval_s": secs(config.system_check_interval),
        "stale_warning_s": secs(config.stale_warning),
        "stale_critical_s": secs(config.stale_critical),
        "history_retention_s": secs(config.history_retention),
        "prometheus_textfile": config.prometheus_textfile.as_ref().map(|p| p.display().to_string()),
        "ssh": {
            "user": config.ssh.user,
            "port": config.ssh.port,
            "connect_timeout_s": secs(config.ssh.connect_timeout),
            "command_timeout_s": secs(config.ssh.command_timeout),
            "sudo": config.ssh.sudo,
        },
        "pools": pools,
        "notes": notes,
        "probes": probes,
        "worst_case_tick_s": {
            "watching": secs(config.worst_case_watching()),
            "failover": secs(config.worst_case_tick()),
        },
        "warnings": warnings,
    })
}

/// What the steps will reach, which a config alone does not show, and what is missing for
/// them on this host.
fn step_notes(pool: &Pool, lines: &mut Vec<String>, warnings: &mut Vec<String>) {
    for step in &pool.steps {
        let at = format!("pool {}: step `{}`", pool.name, step.name);
        let notes = step.kind.get().notes();
        let kind = step.type_name();
        lines.extend(notes.lines.iter().map(|l| format!("{at} ({kind}): {l}")));
        warnings.extend(notes.warnings.iter().map(|w| format!("{at}: {w}")));
    }
}
