//! Rendering a built report: the Nagios plugin output, the readable tree (with colour on a
//! terminal), and the Prometheus exposition. Pure functions of the [`Report`].

use std::fmt::Write as _;

use super::classify::describe_pause;
use super::tree::{PoolReport, Report};
use crate::model::Status;
use crate::text::{human_secs, one_line, printable};

/// The longest first line (without its newline): NRPE v2 passes on 1,024 bytes with the
/// terminating NUL, and the first line is where Nagios reads the status and the perfdata.
pub const NAGIOS_FIRST_LINE_MAX: usize = 1023;
/// The longest whole output: Nagios Core keeps 8,192 bytes (with the NUL) of a plugin's
/// output; a margin for safety.
pub const NAGIOS_OUTPUT_MAX: usize = 8000;
/// The problems' lines keep this much of the output (about ten lines) before perfdata
/// of healthy pools.
const DETAILS_KEPT: usize = 1024;
/// Long-output perfdata lines are wrapped at about this many bytes.
const PERF_LINE: usize = 500;

/// The Nagios plugin output. When everything fits, one line
/// `DEADPOOL <STATUS> - <summary>[; <problem>]... | <perfdata>` and one line per problem.
/// When it does not (many pools, long messages), [`nagios_compact`]: counts and the worst
/// pools by name on the first line, the problems on the next lines, the pools' perfdata
/// last, after a `|` (Nagios's long-output perfdata); always within
/// [`NAGIOS_FIRST_LINE_MAX`] and [`NAGIOS_OUTPUT_MAX`].
pub fn nagios(report: &Report) -> String {
    let summary = if report.pools.is_empty() {
        "no pools configured".to_string()
    } else {
        let pools: Vec<String> = report
            .pools
            .iter()
            .map(|p| format!("{} {} on {}", p.name, state_word(p, "unchecked"), p.active))
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
    let mut perf = perf_head(report);
    for item in pool_perf(report) {
        perf.push(' ');
        perf.push_str(&item);
    }
    let first = format!("{first} | {perf}");
    let mut out = format!("{first}\n");
    for p in &report.problems {
        let _ = writeln!(out, "{}: {}", p.status.as_str(), one_line(&p.message));
    }
    if first.len() <= NAGIOS_FIRST_LINE_MAX && out.len() <= NAGIOS_OUTPUT_MAX {
        return out;
    }
    nagios_compact(report)
}

/// The instance's perfdata: `tick_age` and `tick_duration`, with the staleness thresholds.
fn perf_head(report: &Report) -> String {
    let i = &report.instance;
    let tick_age = i
        .last_tick_age_s
        .map_or("U".to_string(), |a| format!("{:.3}s", a.max(0.0)));
    let tick_duration = i
        .last_tick_duration_s
        .map_or("U".to_string(), |d| format!("{d:.3}s"));
    format!(
        "tick_age={tick_age};{};{};0 tick_duration={tick_duration};;;0",
        i.stale_warning_s, i.stale_critical_s
    )
}

/// `'<pool>_failures'=<n>;;<max>;0` per pool, in the config's order, then each replica's
/// lag, `'<pool>_<role>_lag'=<s>s;;;0`, where its monitor knows it.
fn pool_perf(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for p in &report.pools {
        let name: String = p.name.chars().filter(|c| *c != '\'' && *c != '=').collect();
        // A pool that fails over by time (`down_for`) has no count threshold.
        let crit = match p.down_for_s {
            Some(_) => String::new(),
            None => p.max_failed_checks.to_string(),
        };
        out.push(format!("'{name}_failures'={};;{crit};0", p.failures));
        for s in &p.monitor.servers {
            if let Some(lag) = s.replication.as_ref().and_then(|r| r.lag_s) {
                out.push(format!("'{name}_{}_lag'={lag}s;;;0", s.role));
            }
        }
    }
    out
}

/// A pool's state in a word: `held` while an orphaned lock holds it back, whatever its own
/// record says; `none` without a record.
fn state_word<'a>(p: &'a PoolReport, none: &'a str) -> &'a str {
    if p.held_by.is_some() {
        "held"
    } else {
        p.state.as_deref().unwrap_or(none)
    }
}

/// A pool in the first line's list of the worst: its name and, in a word, why.
fn pool_tag(p: &PoolReport) -> String {
    let mut tag = format!("{} ", p.name);
    if p.pause.is_some() {
        tag.push_str("paused");
    } else {
        tag.push_str(state_word(p, "unchecked"));
    }
    if p.failures > 0 && p.down_for_s.is_none() {
        let _ = write!(tag, " {}/{}", p.failures, p.max_failed_checks);
    } else if p.failures > 0 {
        let _ = write!(tag, " {} failed", p.failures);
    }
    tag
}

/// The bounded form, for any number of pools and any length of message:
///
/// - line 1: the status, the instance's problem, the pools counted by status, and the
///   worst pools by name (worst first, then by name) while the line stays under 1,024
///   bytes, then `and N more`; the instance's perfdata;
/// - then one line per problem, worst first, while the output stays under 8 KB, then how
///   many were left out;
/// - last, after `| `, every pool's perfdata, whole items only. Should they not all fit
///   (about 70 pools with 64-character names, once the problems have had their first
///   1 KB), the pools with problems are kept first and a line says how many pools'
///   perfdata were left out: never half an item.
pub fn nagios_compact(report: &Report) -> String {
    let first = compact_first_line(report);

    // The pools' perfdata, problem pools first, whole items within what is left once the
    // problems have had their first 2 KB.
    let problem_lines: Vec<String> = report
        .problems
        .iter()
        .map(|p| format!("{}: {}\n", p.status.as_str(), one_line(&p.message)))
        .collect();
    let details_first = problem_lines
        .iter()
        .map(String::len)
        .sum::<usize>()
        .min(DETAILS_KEPT);
    let reserve = 200; // for the lines saying what was left out
    let room = NAGIOS_OUTPUT_MAX.saturating_sub(first.len() + reserve + details_first);
    let (perf_lines, left_out) = compact_perf(report, room);

    let mut details = String::new();
    let limit = NAGIOS_OUTPUT_MAX.saturating_sub(first.len() + perf_lines.len() + reserve);
    let mut shown = 0;
    for line in &problem_lines {
        if details.len() + line.len() > limit {
            break;
        }
        details.push_str(line);
        shown += 1;
    }
    let mut out = first;
    out.push_str(&details);
    if shown < report.problems.len() {
        let _ = writeln!(
            out,
            "... and {} more problem(s): see `deadpool report`",
            report.problems.len() - shown
        );
    }
    if left_out > 0 {
        let _ = writeln!(
            out,
            "perfdata of {left_out} pool(s) left out to stay within Nagios's 8 KB"
        );
    }
    out.push_str(&perf_lines);
    out
}

/// The compact form's first line: status, summary, the worst pools, the instance's
/// perfdata; under [`NAGIOS_FIRST_LINE_MAX`] bytes.
fn compact_first_line(report: &Report) -> String {
    let head = format!("DEADPOOL {} - ", report.status.as_str());
    let perf = format!(" | {}", perf_head(report));
    let budget = NAGIOS_FIRST_LINE_MAX.saturating_sub(head.len() + perf.len());
    let summary = truncate_bytes(&compact_summary(report), budget);
    let mut worst: Vec<&PoolReport> = report
        .pools
        .iter()
        .filter(|p| p.status != Status::Ok)
        .collect();
    worst.sort_by(|a, b| b.status.cmp(&a.status).then_with(|| a.name.cmp(&b.name)));
    let listed = worst_listed(&worst, budget.saturating_sub(summary.len()));
    format!("{head}{summary}{listed}{perf}\n")
}

/// The instance's problem, if any, and the pools counted by status.
fn compact_summary(report: &Report) -> String {
    let mut summary = String::new();
    if report.instance.status != Status::Ok {
        summary.push_str(&one_line(&report.instance.message));
        summary.push_str("; ");
    }
    let count = |s: Status| report.pools.iter().filter(|p| p.status == s).count();
    let counts: Vec<String> = [
        Status::Critical,
        Status::Unknown,
        Status::Warning,
        Status::Ok,
    ]
    .into_iter()
    .filter(|s| count(*s) > 0)
    .map(|s| format!("{} {}", count(s), s.as_str()))
    .collect();
    let _ = write!(
        summary,
        "{} pools: {}",
        report.pools.len(),
        counts.join(", ")
    );
    summary
}

/// `; worst: a, b, and N more`: the worst pools by name while they fit in `budget` bytes.
fn worst_listed(worst: &[&PoolReport], budget: usize) -> String {
    let mut listed = String::new();
    for (shown, p) in worst.iter().enumerate() {
        let left = worst.len() - shown - 1;
        let item = format!(
            "{}{}",
            if shown == 0 { "; worst: " } else { ", " },
            pool_tag(p)
        );
        let more = if left > 0 {
            format!(", and {left} more")
        } else {
            String::new()
        };
        // Room for this pool, and for the `and N more` that may follow it.
        let after = format!(", and {} more", worst.len());
        if listed.len() + item.len() + more.len().max(after.len()) > budget {
            let left = worst.len() - shown;
            let _ = write!(
                listed,
                "{}{left} more",
                if shown == 0 { "; worst: " } else { ", and " }
            );
            break;
        }
        listed.push_str(&item);
    }
    listed
}

/// The pools' perfdata lines (after `| `), whole items within `room` bytes, problem pools
/// first; and how many pools' items were left out.
fn compact_perf(report: &Report, mut room: usize) -> (String, usize) {
    let items = pool_perf(report);
    let mut order: Vec<usize> = (0..report.pools.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(report.pools[*i].status));
    let mut kept = vec![false; items.len()];
    for i in order {
        let need = items[i].len() + 3;
        if need <= room {
            kept[i] = true;
            room -= need;
        }
    }
    let mut perf_lines = String::new();
    let mut line = String::from("| ");
    for (item, _) in items.iter().zip(&kept).filter(|(_, k)| **k) {
        if line.len() > 2 && line.len() + item.len() + 1 > PERF_LINE {
            perf_lines.push_str(line.trim_end());
            perf_lines.push('\n');
            line.clear();
        }
        line.push_str(item);
        line.push(' ');
    }
    if line.trim() != "|" {
        perf_lines.push_str(line.trim_end());
        perf_lines.push('\n');
    }
    (perf_lines, kept.iter().filter(|k| !**k).count())
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
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
            let _ = writeln!(out, "  {}{}", paint(p.status), printable(&p.message));
            if !p.hint.is_empty() {
                let _ = writeln!(out, "             -> {}", p.hint);
            }
        }
    }
    let i = &report.instance;
    let _ = writeln!(out, "instance {} (state {})", i.config_dir, i.state_dir);
    let _ = writeln!(out, "  {} {}", paint(i.status), printable(&i.message));
    for p in &report.pools {
        let _ = writeln!(out, "pool {}", p.name);
        let state = match &p.held_by {
            Some(old) => format!("held back by the lock of pool {old}"),
            None => p.state.as_deref().unwrap_or("not checked yet").to_string(),
        };
        // A pool that fails over by time (`down_for`) has no count threshold.
        let failures = match p.down_for_s {
            Some(_) => p.failures.to_string(),
            None => format!("{}/{}", p.failures, p.max_failed_checks),
        };
        let _ = writeln!(
            out,
            "  {} {state}, active {} ({}), {failures} failures{}{}",
            paint(p.status),
            p.active,
            p.active_address,
            p.pause
                .as_ref()
                .map(|pause| format!(", {}", describe_pause(pause)))
                .unwrap_or_default(),
            if p.reason.is_empty() {
                String::new()
            } else {
                format!(" - {}", printable(&p.reason))
            }
        );
        if let Some(loss) = &p.lost {
            let _ = writeln!(out, "  lost at the failover: {}", loss.words);
            for line in loss.details() {
                let _ = writeln!(out, "    {line}");
            }
        }
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
                printable(&s.message)
            );
            if let Some(line) = replication_line(s) {
                let _ = writeln!(out, "               {}", printable(&line));
            }
        }
        if let Some(d) = &p.durability {
            let _ = writeln!(out, "    durability of {}: {}", d.server, d.words);
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
                    printable(&h.message),
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
    let mut out = Metrics(String::new());
    instance_metrics(&mut out, report, exposition);
    pool_metrics(&mut out, report);
    pause_metrics(&mut out, report);
    check_metrics(&mut out, report);
    out.0
}

/// The exposition being written, one metric family at a time.
struct Metrics(String);

impl Metrics {
    /// One family: its help and type lines, then each sample (labels and value).
    /// A metric only where some server has a value (replication facts come from database
    /// monitors only).
    fn metric_if_any(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
        if !samples.is_empty() {
            self.metric(name, kind, help, samples);
        }
    }

    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }
}

/// A pool's label, `pool="NAME"`.
fn pool_label(p: &PoolReport) -> String {
    format!("pool=\"{}\"", label(&p.name))
}

/// One sample per server that has a value, labelled with its pool, role and address.
fn per_server(
    report: &Report,
    value: impl Fn(&super::tree::ServerReport) -> Option<f64>,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for p in &report.pools {
        for s in &p.monitor.servers {
            if let Some(v) = value(s) {
                let labels = format!(
                    "{{{},role=\"{}\",address=\"{}\"}}",
                    pool_label(p),
                    s.role,
                    label(&s.address)
                );
                out.push((labels, v));
            }
        }
    }
    out
}

/// One sample per pool, labelled with the pool alone.
fn per_pool(report: &Report, value: impl Fn(&PoolReport) -> f64) -> Vec<(String, f64)> {
    report
        .pools
        .iter()
        .map(|p| (format!("{{{}}}", pool_label(p)), value(p)))
        .collect()
}

/// The instance: its worst status, the last tick, the build.
fn instance_metrics(out: &mut Metrics, report: &Report, exposition: Exposition) {
    let i = &report.instance;
    out.metric(
        "deadpool_status",
        "gauge",
        "Worst status of the instance (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
        vec![(String::new(), f64::from(report.status.exit_code()))],
    );
    out.metric(
        "deadpool_last_tick_timestamp_seconds",
        "gauge",
        "When the last tick started.",
        i.last_tick_at
            .map(|t| (String::new(), t as f64 / 1000.0))
            .into_iter()
            .collect(),
    );
    out.metric(
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
        out.metric(
            "deadpool_tick_age_seconds",
            "gauge",
            "Seconds since the last tick started, when the report ran.",
            i.last_tick_age_s
                .map(|a| (String::new(), a))
                .into_iter()
                .collect(),
        );
    }
    out.metric(
        "deadpool_tick_duration_seconds",
        "gauge",
        "How long the last tick took.",
        i.last_tick_duration_s
            .map(|d| (String::new(), d))
            .into_iter()
            .collect(),
    );
}

/// Each pool: its worst status, its state, its count and its chains.
fn pool_metrics(out: &mut Metrics, report: &Report) {
    out.metric(
        "deadpool_pool_status",
        "gauge",
        "Worst status of the pool.",
        per_pool(report, |p| f64::from(p.status.exit_code())),
    );
    const STATES: [&str; 6] = [
        "armed",
        "blocked",
        "failing_over",
        "failed_over",
        "failover_failed",
        "interrupted",
    ];
    out.metric(
        "deadpool_pool_state",
        "gauge",
        "1 for the pool's current state.",
        report
            .pools
            .iter()
            .flat_map(|p| {
                STATES.iter().map(move |s| {
                    (
                        format!("{{{},state=\"{s}\"}}", pool_label(p)),
                        f64::from(u8::from(p.state.as_deref() == Some(*s))),
                    )
                })
            })
            .collect(),
    );
    out.metric(
        "deadpool_pool_failures",
        "gauge",
        "Consecutive failed checks of the active server.",
        per_pool(report, |p| f64::from(p.failures)),
    );
    out.metric(
        "deadpool_failovers_total",
        "counter",
        "Chains started (automatic failovers and promotes).",
        per_pool(report, |p| p.failovers as f64),
    );
}

/// Each pool's maintenance pause: whether, until when, by whom and why.
fn pause_metrics(out: &mut Metrics, report: &Report) {
    out.metric(
        "deadpool_pool_paused",
        "gauge",
        "1 while a maintenance pause is on: checked and reported, never failed over.",
        per_pool(report, |p| f64::from(u8::from(p.pause.is_some()))),
    );
    out.metric(
        "deadpool_pool_paused_until_timestamp_seconds",
        "gauge",
        "When the pool's pause ends by itself.",
        report
            .pools
            .iter()
            .filter_map(|p| {
                p.pause.as_ref().map(|pause| {
                    (
                        format!("{{{}}}", pool_label(p)),
                        pause.until as f64 / 1000.0,
                    )
                })
            })
            .collect(),
    );
    out.metric(
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
                            pool_label(p),
                            label(&pause.by),
                            label(&pause.reason)
                        ),
                        1.0,
                    )
                })
            })
            .collect(),
    );
}

/// A server's replication in one line for the full report: whom it replicates from, its
/// received and applied positions, its lag and when it was last caught up; or a
/// primary's own position.
fn replication_line(s: &super::tree::ServerReport) -> Option<String> {
    if let Some(r) = &s.replication {
        let mut line = format!(
            "replicates from {} ({}), received {}, applied {}",
            r.source,
            if r.receiving {
                "receiving"
            } else {
                "NOT receiving"
            },
            r.received.as_deref().unwrap_or("-"),
            r.applied.as_deref().unwrap_or("-"),
        );
        if let Some(lag) = r.lag_s {
            line.push_str(&format!(", lag {lag}s"));
        }
        if let Some(age) = r.caught_up_age_s {
            line.push_str(&format!(
                ", caught up {} before the primary's last position",
                human_secs(age)
            ));
        }
        if let Some(problem) = &r.problem {
            line.push_str(&format!("; {problem}"));
        }
        return Some(line);
    }
    s.position.as_ref().map(|p| format!("position {p}"))
}

/// What the checks found: the threshold, each server's last check, each step's readiness
/// on each host.
fn check_metrics(out: &mut Metrics, report: &Report) {
    out.metric(
        "deadpool_pool_max_failed_checks",
        "gauge",
        "The failover threshold.",
        per_pool(report, |p| f64::from(p.max_failed_checks)),
    );
    out.metric_if_any(
        "deadpool_server_lag_seconds",
        "gauge",
        "A replica's lag behind its source, as the server reports it.",
        per_server(report, |s| s.replication.as_ref()?.lag_s.map(|l| l as f64)),
    );
    out.metric_if_any(
        "deadpool_server_receiving",
        "gauge",
        "1 when a replica's link to its source is up.",
        per_server(report, |s| {
            s.replication
                .as_ref()
                .map(|r| f64::from(u8::from(r.receiving)))
        }),
    );
    out.metric_if_any(
        "deadpool_server_caught_up_age_seconds",
        "gauge",
        "How long before the primary's newest recorded position a standby was last seen caught up.",
        per_server(report, |s| s.replication.as_ref()?.caught_up_age_s),
    );
    out.metric(
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
                            pool_label(p),
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
    out.metric(
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
                                pool_label(p),
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
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
