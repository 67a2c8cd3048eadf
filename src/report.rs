//! The status tree behind `report`: built from the config and the database alone (no
//! network), then rendered as a Nagios line, a readable tree, or JSON.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::cli::Role;
use crate::config::{Config, Pool, format_duration};
use crate::monitor::Health;
use crate::state::{PoolRecord, PoolState, State};
use crate::text::{human_secs, one_line};

pub use crate::model::Status;

#[derive(Debug, Serialize)]
pub struct Report {
    pub status: Status,
    pub generated_at: i64,
    pub instance: Instance,
    pub pools: Vec<PoolReport>,
    /// Every problem, worst first.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub status: Status,
    pub pool: Option<String>,
    pub message: String,
    /// What to do next.
    pub hint: String,
}

#[derive(Debug, Serialize)]
pub struct Instance {
    pub status: Status,
    pub config_dir: String,
    pub state_dir: String,
    pub last_tick_at: Option<i64>,
    pub last_tick_age_s: Option<f64>,
    pub last_tick_duration_s: Option<f64>,
    pub stale_warning_s: f64,
    pub stale_critical_s: f64,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct PoolReport {
    pub name: String,
    pub status: Status,
    /// `null` until the first tick has seen the pool.
    pub state: Option<String>,
    pub active: String,
    pub active_address: String,
    pub standby_address: String,
    pub failures: u32,
    pub max_failed_checks: u32,
    pub reason: String,
    pub state_since: Option<i64>,
    pub monitor: MonitorReport,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct MonitorReport {
    #[serde(rename = "type")]
    pub kind: String,
    pub servers: Vec<ServerReport>,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub role: String,
    pub address: String,
    pub active: bool,
    pub status: Status,
    /// up, degraded, down; `null` when never checked.
    pub health: Option<String>,
    pub message: String,
    pub checked_at: Option<i64>,
    pub age_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub index: usize,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub hosts: Vec<HostReport>,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub status: Status,
    pub message: String,
    pub checked_at: i64,
    pub age_s: f64,
}

fn age(now: i64, at: i64) -> f64 {
    (now - at) as f64 / 1000.0
}

/// Builds the tree from the database (which may not exist yet).
pub fn build(
    config: &Config,
    state: Option<&State>,
    only: Option<&str>,
    now: i64,
) -> Result<Report> {
    let mut problems: Vec<Problem> = Vec::new();
    let tick = match state {
        Some(s) => s.last_tick()?,
        None => None,
    };
    let warn_s = config.stale_warning.as_secs_f64();
    let crit_s = config.stale_critical.as_secs_f64();
    let (instance_status, message) = match tick {
        None => (
            Status::Critical,
            "no tick has run yet; is the deadpool timer enabled?".to_string(),
        ),
        Some(t) => {
            let a = age(now, t.started_at);
            let msg = format!(
                "last tick {} ago, took {}",
                human_secs(a.max(0.0)),
                human_secs(t.duration_ms as f64 / 1000.0)
            );
            if a < -config.tick_interval.as_secs_f64() {
                (
                    Status::Warning,
                    format!(
                        "the last tick started {} in the future: the clock went backwards; counts and ages are unreliable until it catches up",
                        human_secs(-a)
                    ),
                )
            } else if a > crit_s {
                (
                    Status::Critical,
                    format!(
                        "{msg}; the timer seems stopped (critical after {})",
                        format_duration(config.stale_critical)
                    ),
                )
            } else if a > warn_s {
                (
                    Status::Warning,
                    format!(
                        "{msg}; ticks are late (warning after {})",
                        format_duration(config.stale_warning)
                    ),
                )
            } else {
                (Status::Ok, msg)
            }
        }
    };
    if instance_status != Status::Ok {
        let hint = match tick {
            None => {
                "enable the timer: systemctl enable --now deadpool.timer (or run `deadpool tick` from cron)"
            }
            Some(_) => {
                "see `systemctl status deadpool.timer` and `journalctl -u deadpool`; a tick may be failing or hung"
            }
        };
        problems.push(Problem {
            status: instance_status,
            pool: None,
            message: message.clone(),
            hint: hint.to_string(),
        });
    }
    let instance = Instance {
        status: instance_status,
        config_dir: config.dir.display().to_string(),
        state_dir: config.state_dir.display().to_string(),
        last_tick_at: tick.map(|t| t.started_at),
        last_tick_age_s: tick.map(|t| age(now, t.started_at)),
        last_tick_duration_s: tick.map(|t| t.duration_ms as f64 / 1000.0),
        stale_warning_s: warn_s,
        stale_critical_s: crit_s,
        message,
    };

    let mut pools = Vec::new();
    for pool in config
        .pools
        .iter()
        .filter(|p| only.is_none_or(|o| o == p.name))
    {
        pools.push(pool_report(config, pool, state, now, &mut problems)?);
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.status));
    let status = problems
        .iter()
        .map(|p| p.status)
        .max()
        .unwrap_or(Status::Ok);
    Ok(Report {
        status,
        generated_at: now,
        instance,
        pools,
        problems,
    })
}

fn pool_report(
    config: &Config,
    pool: &Pool,
    state: Option<&State>,
    now: i64,
    problems: &mut Vec<Problem>,
) -> Result<PoolReport> {
    let rec: Option<PoolRecord> = match state {
        Some(s) => s.pool(&pool.name)?,
        None => None,
    };
    let monitor_rows = match state {
        Some(s) => s.monitor(&pool.name)?,
        None => Vec::new(),
    };
    let readiness = match state {
        Some(s) => s.readiness(&pool.name)?,
        None => Vec::new(),
    };
    let mut mine: Vec<Problem> = Vec::new();
    let name = &pool.name;
    let mut problem = |status: Status, message: String, hint: String| {
        mine.push(Problem {
            status,
            pool: Some(name.clone()),
            message: format!("{name}: {message}"),
            hint,
        });
    };
    let active = rec.as_ref().map_or(Role::Primary, |r| r.active);
    let pool_state = rec.as_ref().map(|r| r.state);

    // The pool's own state.
    match &rec {
        None => problem(
            Status::Warning,
            "not checked by a tick yet".into(),
            "wait for the next tick (a pool added to the config is picked up by it)".into(),
        ),
        Some(r) => match r.state {
            PoolState::Armed if r.failures > 0 => problem(
                Status::Warning,
                format!(
                    "active {} ({}) failed {}/{} consecutive checks: {}",
                    r.active.as_str(),
                    pool.address(r.active),
                    r.failures,
                    pool.max_failed_checks,
                    monitor_rows
                        .iter()
                        .find(|m| m.role == r.active)
                        .map_or("", |m| m.message.as_str())
                ),
                format!(
                    "look at {} now: deadpool fails over at {}/{}",
                    pool.address(r.active),
                    pool.max_failed_checks,
                    pool.max_failed_checks
                ),
            ),
            PoolState::Armed => {}
            PoolState::FailedOver => problem(
                Status::Warning,
                format!(
                    "{}; run `deadpool reset {}` once it is looked at",
                    r.reason, pool.name
                ),
                format!(
                    "find out why {} failed, repair or rebuild it as the new standby, then `deadpool reset {name}`",
                    pool.address(r.active.other())
                ),
            ),
            PoolState::FailingOver => problem(
                Status::Critical,
                format!("failover in progress: {}", r.reason),
                format!("watch `deadpool history --pool {name}`; a tick that finds no process running it marks it interrupted"),
            ),
            PoolState::Blocked => problem(
                Status::Critical,
                format!("blocked: {}", r.reason),
                "fix what the reason names; the failover runs on the next tick once it can (or `deadpool promote` by hand)".into(),
            ),
            PoolState::FailoverFailed | PoolState::Interrupted => problem(
                Status::Critical,
                format!(
                    "{}: {}; fix it by hand, then `deadpool reset {}`",
                    r.state.as_str(),
                    r.reason,
                    pool.name
                ),
                format!(
                    "see which steps ran in `deadpool history --pool {name}`, finish or undo them by hand, then `deadpool reset {name} --active primary|secondary`"
                ),
            ),
        },
    }

    // Monitor results.
    let mut servers = Vec::new();
    for role in [Role::Primary, Role::Secondary] {
        let row = monitor_rows.iter().find(|m| m.role == role);
        let is_active = role == active;
        let status = match row.map(|r| r.health) {
            None => Status::Unknown,
            Some(Health::Up) => Status::Ok,
            Some(Health::Degraded) => Status::Warning,
            Some(Health::Down) if is_active => {
                if pool_state.is_some_and(PoolState::is_locked) {
                    Status::Critical
                } else {
                    Status::Warning
                }
            }
            Some(Health::Down) => Status::Warning,
        };
        servers.push(ServerReport {
            role: role.as_str().to_string(),
            address: pool.address(role).to_string(),
            active: is_active,
            status,
            health: row.map(|r| r.health.as_str().to_string()),
            message: row.map(|r| r.message.clone()).unwrap_or_default(),
            checked_at: row.map(|r| r.checked_at),
            age_s: row.map(|r| age(now, r.checked_at)),
        });
    }
    let health = |role: Role| {
        monitor_rows
            .iter()
            .find(|m| m.role == role)
            .map(|m| m.health)
    };
    let (active_h, standby_h) = (health(active), health(active.other()));
    let standby_addr = pool.address(active.other());
    if active_h == Some(Health::Down) && standby_h == Some(Health::Down) {
        problem(
            Status::Critical,
            "both servers are down".into(),
            "restore either server by hand; deadpool cannot fail over to a dead standby".into(),
        );
    } else if standby_h == Some(Health::Down) {
        let msg = servers
            .iter()
            .find(|s| !s.active)
            .map(|s| s.message.clone())
            .unwrap_or_default();
        problem(
            Status::Warning,
            format!(
                "standby {} ({standby_addr}) is down: {msg}",
                active.other().as_str()
            ),
            "bring the standby back: until then a failover is not possible".into(),
        );
    }
    if active_h == Some(Health::Down)
        && pool_state.is_some_and(PoolState::is_locked)
        && standby_h != Some(Health::Down)
    {
        problem(
            Status::Critical,
            format!(
                "active {} ({}) is down and the pool is locked",
                active.as_str(),
                pool.address(active)
            ),
            format!(
                "the locked pool will not fail over again: restore it, or `deadpool reset {name}` and let deadpool act"
            ),
        );
    }
    for s in servers
        .iter()
        .filter(|s| s.health.as_deref() == Some("degraded"))
    {
        problem(
            Status::Warning,
            format!(
                "{} ({}) is alive with a problem: {}",
                s.role, s.address, s.message
            ),
            "check the monitor's credentials and the server's connection limits".into(),
        );
    }
    // Split-brain: a database monitor saw the standby writable.
    let row = |role: Role| monitor_rows.iter().find(|m| m.role == role);
    let writable = |role: Role| {
        row(role)
            .filter(|m| m.health.is_alive())
            .and_then(|m| m.read_only.map(|ro| !ro))
    };
    let locked = pool_state.is_some_and(PoolState::is_locked);
    if crate::rules::split_brain(locked, writable(active), writable(active.other())) {
        let why = if locked {
            "while the pool is failed over"
        } else {
            "as is the active server"
        };
        problem(
            Status::Critical,
            format!(
                "split-brain risk: standby {} ({standby_addr}) is writable {why}; make it read-only (SET GLOBAL read_only = ON)",
                active.other().as_str()
            ),
            format!(
                "make {standby_addr} read-only now (MySQL: SET GLOBAL read_only = ON; Redis: REPLICAOF the active server), then check which writes went where"
            ),
        );
    }
    let locked_note = if locked {
        " (pool locked: applies after reset)"
    } else {
        ""
    };

    // Readiness.
    let mut steps = Vec::new();
    let stale_after_ms = (config.system_check_interval + config.stale_critical).as_millis() as i64;
    for (index, step) in pool.steps.iter().enumerate() {
        let hosts: Vec<HostReport> = readiness
            .iter()
            .filter(|r| r.step_index == index)
            .map(|r| HostReport {
                host: r.host.clone(),
                status: r.status,
                message: r.message.clone(),
                checked_at: r.checked_at,
                age_s: age(now, r.checked_at),
            })
            .collect();
        let mut status = hosts
            .iter()
            .map(|h| h.status)
            .max()
            .unwrap_or(Status::Unknown);
        if hosts.is_empty() {
            if rec.is_some() {
                problem(
                    Status::Warning,
                    format!(
                        "step {} `{}`: readiness not checked yet",
                        index + 1,
                        step.name
                    ),
                    "the next tick checks it".into(),
                );
            }
        } else {
            for h in hosts.iter().filter(|h| h.status != Status::Ok) {
                // A locked pool cannot fail over until reset: its readiness is advice.
                let status = if locked {
                    h.status.min(Status::Warning)
                } else {
                    h.status
                };
                problem(
                    status,
                    format!(
                        "step {} `{}` on {}: {} (checked {} ago){locked_note}",
                        index + 1,
                        step.name,
                        h.host,
                        h.message,
                        human_secs(h.age_s.max(0.0))
                    ),
                    format!(
                        "fix it on {}: a failover now would fail at this step",
                        h.host
                    ),
                );
            }

            let oldest = hosts.iter().map(|h| h.checked_at).min().unwrap_or(now);
            if now - oldest > stale_after_ms {
                status = status.max(Status::Warning);
                problem(
                    Status::Warning,
                    format!(
                        "step {} `{}`: readiness last checked {} ago",
                        index + 1,
                        step.name,
                        human_secs(age(now, oldest))
                    ),
                    "ticks skip readiness while the active server is failing, or the check hangs; see `journalctl -u deadpool`".into(),
                );
            }
        }
        steps.push(StepReport {
            index: index + 1,
            name: step.name.clone(),
            kind: step.type_name().to_string(),
            status,
            hosts,
        });
    }

    let status = mine.iter().map(|p| p.status).max().unwrap_or(Status::Ok);
    problems.extend(mine);
    Ok(PoolReport {
        name: pool.name.clone(),
        status,
        state: pool_state.map(|s| s.as_str().to_string()),
        active: active.as_str().to_string(),
        active_address: pool.address(active).to_string(),
        standby_address: standby_addr.to_string(),
        failures: rec.as_ref().map_or(0, |r| r.failures),
        max_failed_checks: pool.max_failed_checks,
        reason: rec.as_ref().map(|r| r.reason.clone()).unwrap_or_default(),
        state_since: rec.as_ref().map(|r| r.state_since),
        monitor: MonitorReport {
            kind: pool.monitor.kind.type_name().to_string(),
            servers,
        },
        steps,
    })
}

/// `DEADPOOL <STATUS> - <summary>[; <problem>]... | <perfdata>`, then one line per problem.
pub fn nagios(report: &Report) -> String {
    let summary = if report.pools.is_empty() {
        "no pools configured".to_string()
    } else {
        let pools: Vec<String> = report
            .pools
            .iter()
            .map(|p| {
                format!(
                    "{} {} on {}",
                    p.name,
                    p.state.as_deref().unwrap_or("unchecked"),
                    p.active
                )
            })
            .collect();
        pools.join(", ")
    };
    let mut first = format!(
        "DEADPOOL {} - {}",
        report.status.as_str(),
        one_line(&summary)
    );
    for p in &report.problems {
        first.push_str("; ");
        first.push_str(&one_line(&p.message));
    }
    let i = &report.instance;
    let tick_age = i
        .last_tick_age_s
        .map_or("U".to_string(), |a| format!("{:.3}s", a.max(0.0)));
    let tick_duration = i
        .last_tick_duration_s
        .map_or("U".to_string(), |d| format!("{d:.3}s"));
    let mut perf = format!(
        "tick_age={tick_age};{};{};0 tick_duration={tick_duration};;;0",
        i.stale_warning_s, i.stale_critical_s
    );
    for p in &report.pools {
        let name: String = p.name.chars().filter(|c| *c != '\'' && *c != '=').collect();
        let _ = write!(
            perf,
            " '{name}_failures'={};;{};0",
            p.failures, p.max_failed_checks
        );
    }
    let mut out = format!("{first} | {perf}\n");
    for p in &report.problems {
        let _ = writeln!(out, "{}: {}", p.status.as_str(), one_line(&p.message));
    }
    out
}

/// The readable tree: instance, then each pool with its monitor and steps; problems first.
pub fn full(report: &Report, colour: bool) -> String {
    let paint = |status: Status| tag(status, colour);
    let mut out = String::new();
    let headline = paint(report.status)
        .replacen("! ", "", 1)
        .replacen("  ", "", 1);
    let _ = writeln!(out, "DEADPOOL {}", headline.trim_end());
    if !report.problems.is_empty() {
        let _ = writeln!(out, "problems (worst first):");
        for p in &report.problems {
            let _ = writeln!(out, "  {}{}", paint(p.status), p.message);
            if !p.hint.is_empty() {
                let _ = writeln!(out, "             -> {}", p.hint);
            }
        }
    }
    let i = &report.instance;
    let _ = writeln!(out, "instance {} (state {})", i.config_dir, i.state_dir);
    let _ = writeln!(out, "  {} {}", paint(i.status), i.message);
    for p in &report.pools {
        let _ = writeln!(out, "pool {}", p.name);
        let state = p.state.as_deref().unwrap_or("not checked yet");
        let _ = writeln!(
            out,
            "  {} {state}, active {} ({}), {}/{} failures{}",
            paint(p.status),
            p.active,
            p.active_address,
            p.failures,
            p.max_failed_checks,
            if p.reason.is_empty() {
                String::new()
            } else {
                format!(" - {}", p.reason)
            }
        );
        let _ = writeln!(out, "  monitor {}", p.monitor.kind);
        for s in &p.monitor.servers {
            let checked = s.age_s.map_or("never checked".to_string(), |a| {
                format!("checked {} ago", human_secs(a.max(0.0)))
            });
            let _ = writeln!(
                out,
                "    {} {:<9} {:<16} {:<8} {}{} ({checked})",
                paint(s.status),
                s.role,
                s.address,
                s.health.as_deref().unwrap_or("-"),
                if s.active { "[active] " } else { "" },
                s.message
            );
        }
        if p.steps.is_empty() {
            let _ = writeln!(out, "  steps: none configured");
        } else {
            let _ = writeln!(out, "  steps (readiness)");
        }
        for st in &p.steps {
            let _ = writeln!(
                out,
                "    {} {}. {} ({})",
                paint(st.status),
                st.index,
                st.name,
                st.kind
            );
            if st.hosts.is_empty() {
                let _ = writeln!(out, "        never checked");
            }
            for h in &st.hosts {
                let _ = writeln!(
                    out,
                    "      {} {:<12} {} (checked {} ago)",
                    paint(h.status),
                    h.host,
                    h.message,
                    human_secs(h.age_s.max(0.0))
                );
            }
        }
    }
    out
}

/// A status word padded to one column, marked `!` unless OK, in colour when asked.
fn tag(status: Status, colour: bool) -> String {
    let mark = if status == Status::Ok { ' ' } else { '!' };
    let word = format!("{mark} {:<8} ", status.as_str());
    if !colour {
        return word;
    }
    let code = match status {
        Status::Ok => "32",
        Status::Warning => "33",
        Status::Unknown => "35",
        Status::Critical => "1;31",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

/// The Prometheus text exposition format, for `report --prometheus` and the textfile that
/// node_exporter's textfile collector reads. Statuses are numbers: 0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN.
pub fn prometheus(report: &Report) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let i = &report.instance;
    metric(
        "deadpool_status",
        "gauge",
        "Worst status of the instance (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
        vec![(String::new(), f64::from(report.status.exit_code()))],
    );
    metric(
        "deadpool_last_tick_timestamp_seconds",
        "gauge",
        "When the last tick started.",
        i.last_tick_at
            .map(|t| (String::new(), t as f64 / 1000.0))
            .into_iter()
            .collect(),
    );
    metric(
        "deadpool_tick_age_seconds",
        "gauge",
        "Seconds since the last tick started.",
        i.last_tick_age_s
            .map(|a| (String::new(), a))
            .into_iter()
            .collect(),
    );
    metric(
        "deadpool_tick_duration_seconds",
        "gauge",
        "How long the last tick took.",
        i.last_tick_duration_s
            .map(|d| (String::new(), d))
            .into_iter()
            .collect(),
    );
    let pool = |p: &PoolReport| format!("pool=\"{}\"", label(&p.name));
    metric(
        "deadpool_pool_status",
        "gauge",
        "Worst status of the pool.",
        report
            .pools
            .iter()
            .map(|p| (format!("{{{}}}", pool(p)), f64::from(p.status.exit_code())))
            .collect(),
    );
    const STATES: [&str; 6] = [
        "armed",
        "blocked",
        "failing_over",
        "failed_over",
        "failover_failed",
        "interrupted",
    ];
    metric(
        "deadpool_pool_state",
        "gauge",
        "1 for the pool's current state.",
        report
            .pools
            .iter()
            .flat_map(|p| {
                STATES.iter().map(move |s| {
                    (
                        format!("{{{},state=\"{s}\"}}", pool(p)),
                        f64::from(u8::from(p.state.as_deref() == Some(*s))),
                    )
                })
            })
            .collect(),
    );
    metric(
        "deadpool_pool_failures",
        "gauge",
        "Consecutive failed checks of the active server.",
        report
            .pools
            .iter()
            .map(|p| (format!("{{{}}}", pool(p)), f64::from(p.failures)))
            .collect(),
    );
    metric(
        "deadpool_pool_max_failed_checks",
        "gauge",
        "The failover threshold.",
        report
            .pools
            .iter()
            .map(|p| (format!("{{{}}}", pool(p)), f64::from(p.max_failed_checks)))
            .collect(),
    );
    metric(
        "deadpool_server_up",
        "gauge",
        "1 when the server answered its last check (also when alive with a problem).",
        report
            .pools
            .iter()
            .flat_map(|p| {
                p.monitor
                    .servers
                    .iter()
                    .filter(|s| s.health.is_some())
                    .map(move |s| {
                        let labels = format!(
                            "{{{},role=\"{}\",address=\"{}\",active=\"{}\"}}",
                            pool(p),
                            s.role,
                            label(&s.address),
                            s.active
                        );
                        (
                            labels,
                            f64::from(u8::from(s.health.as_deref() != Some("down"))),
                        )
                    })
            })
            .collect(),
    );
    metric(
        "deadpool_readiness_status",
        "gauge",
        "Each step's readiness on each host.",
        report
            .pools
            .iter()
            .flat_map(|p| {
                p.steps.iter().flat_map(move |st| {
                    st.hosts.iter().map(move |h| {
                        (
                            format!(
                                "{{{},step=\"{}\",host=\"{}\"}}",
                                pool(p),
                                label(&st.name),
                                label(&h.host)
                            ),
                            f64::from(h.status.exit_code()),
                        )
                    })
                })
            })
            .collect(),
    );
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_is_the_maximum() {
        assert!(Status::Critical > Status::Unknown);
        assert!(Status::Unknown > Status::Warning);
        assert!(Status::Warning > Status::Ok);
        assert_eq!(Status::Critical.exit_code(), 2);
        assert_eq!(Status::Unknown.exit_code(), 3);
    }
}
