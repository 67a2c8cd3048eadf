//! Rendering a built report: the Nagios plugin output, the readable tree (with colour on a
//! terminal), and the Prometheus exposition. Pure functions of the [`Report`].

use std::fmt::Write as _;

use super::{PoolReport, Report, Status};
use crate::text::{human_secs, one_line};

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
            "  {} {state}, active {} ({}), {}/{} failures{}{}",
            paint(p.status),
            p.active,
            p.active_address,
            p.failures,
            p.max_failed_checks,
            p.pause
                .as_ref()
                .map(|pause| format!(", {}", super::describe_pause(pause)))
                .unwrap_or_default(),
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

/// Where the metrics go: `report --prometheus` is read when it runs; the textfile is read
/// by node_exporter long after a tick wrote it, so it holds no age computed at writing
/// (an alert uses `time() - deadpool_last_tick_timestamp_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    Report,
    Textfile,
}

/// The Prometheus text exposition format, for `report --prometheus` and the textfile that
/// node_exporter's textfile collector reads. Statuses are numbers: 0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN.
pub fn prometheus(report: &Report, exposition: Exposition) -> String {
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
        "deadpool_build_info",
        "gauge",
        "The deadpool build that wrote these metrics (always 1).",
        vec![(
            format!(
                "{{version=\"{}\",commit=\"{}\"}}",
                label(env!("CARGO_PKG_VERSION")),
                label(env!("DEADPOOL_COMMIT"))
            ),
            1.0,
        )],
    );
    if exposition == Exposition::Report {
        metric(
            "deadpool_tick_age_seconds",
            "gauge",
            "Seconds since the last tick started, when the report ran.",
            i.last_tick_age_s
                .map(|a| (String::new(), a))
                .into_iter()
                .collect(),
        );
    }
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
        "deadpool_failovers_total",
        "counter",
        "Chains started (automatic failovers and promotes).",
        report
            .pools
            .iter()
            .map(|p| (format!("{{{}}}", pool(p)), p.failovers as f64))
            .collect(),
    );
    metric(
        "deadpool_pool_paused",
        "gauge",
        "1 while a maintenance pause is on: checked and reported, never failed over.",
        report
            .pools
            .iter()
            .map(|p| {
                (
                    format!("{{{}}}", pool(p)),
                    f64::from(u8::from(p.pause.is_some())),
                )
            })
            .collect(),
    );
    metric(
        "deadpool_pool_paused_until_timestamp_seconds",
        "gauge",
        "When the pool's pause ends by itself.",
        report
            .pools
            .iter()
            .filter_map(|p| {
                p.pause
                    .as_ref()
                    .map(|pause| (format!("{{{}}}", pool(p)), pause.until as f64 / 1000.0))
            })
            .collect(),
    );
    metric(
        "deadpool_pool_pause_info",
        "gauge",
        "Who paused the pool and why (always 1 while paused).",
        report
            .pools
            .iter()
            .filter_map(|p| {
                p.pause.as_ref().map(|pause| {
                    (
                        format!(
                            "{{{},by=\"{}\",reason=\"{}\"}}",
                            pool(p),
                            label(&pause.by),
                            label(&pause.reason)
                        ),
                        1.0,
                    )
                })
            })
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
