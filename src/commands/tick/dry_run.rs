//! `tick --dry-run`: everything a tick would look at and decide, and the exact chain it
//! would run, with every preflight; nothing is written anywhere. `--json`: the same as one
//! document (schema in the README).

use anyhow::Result;

use crate::config::{Config, Pool};
use crate::error::Outcome;
use crate::failover::{FailoverPlan, plan_steps};
use crate::model::Role;
use crate::monitor::{self, Check};
use crate::round::{self, Facts, PoolSettings, Seen, Stage};
use crate::rules::{self, Decision, Next, Round};
use crate::state::{Pause, PoolRecord, State, now_ms};

pub fn run(config: &Config, json: bool) -> Result<Outcome> {
    let state = State::open_read_only(&config.state_dir)?;
    let previous = match &state {
        Some(s) => s.last_tick()?,
        None => None,
    }
    .map(|t| Round {
        started_at: t.started_at,
        duration_ms: t.duration_ms,
    });
    let now = now_ms();
    let gap = rules::timer_gap(previous, now, config.tick_interval.as_millis() as i64);
    let configured: Vec<_> = config.pools.iter().map(Pool::servers).collect();
    let orphans = match &state {
        Some(s) => s.orphans(&configured)?,
        None => Vec::new(),
    };
    let mut pools = Vec::new();
    for pool in &config.pools {
        let rec = match &state {
            Some(s) => s.pool(&pool.name)?,
            None => None,
        }
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now));
        let mut dry = dry_pool(pool, &rec, gap, now);
        if let Some(orphan) = crate::orphans::holding(&orphans, &pool.name) {
            dry.decision = "held";
            dry.decision_text = format!(
                "not fail over, only check: {}",
                orphan.held_message(&pool.name)
            );
        }
        pools.push(dry);
    }
    if json {
        let doc = serde_json::json!({ "generated_at": now, "gap": gap, "pools": pools });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Outcome::Done);
    }
    print!("{}", text(&pools));
    Ok(Outcome::Done)
}

/// Checks one pool and says what a tick would decide.
fn dry_pool(pool: &Pool, rec: &PoolRecord, gap: bool, now: i64) -> DryPool {
    let checks = monitor::check_all(pool);
    let active = round::active_check(&checks, rec.active);
    let standbys = Seen::standbys(&checks, rec.active);
    let detection = round::detection_of(rec, gap, now);
    let settings = PoolSettings::of(pool);
    let facts = Facts {
        pool: settings.clone(),
        record: rec,
        active: Seen::of(rec.active, active),
        stage: Stage::Round {
            standbys: &standbys,
            gap,
            check_started: std::time::Instant::now(),
            interrupted: "",
        },
        now,
        same_host: &|a, b| crate::net::same_host(a, b, pool.monitor.timeout),
    };
    let (_, target) = round::choice(&facts, &standbys);
    let d = round::decide(
        &settings,
        rec,
        active.health,
        target.as_ref().err().cloned(),
        detection,
        now,
    );
    // A healthy pool's plan: toward the standby the rule would choose were the active
    // server to fail now.
    let chosen = match target {
        Err(_) if active.health.is_alive() => round::would_choose(&facts, &standbys),
        other => other,
    };
    let (to, passed_over, no_candidate) = match chosen {
        Ok((to, passed)) => (to, passed, None),
        Err(why) => (pool.next_standby(rec.active), String::new(), Some(why.text)),
    };
    let pause = rec
        .pause
        .as_ref()
        .filter(|p| rules::paused(Some(p.until), now));
    let (decision, mut decision_text) = words(pool, rec, &d, to, pause, now);
    if d.next == Next::Failover && !passed_over.is_empty() {
        decision_text.push_str(&format!("; passed over: {passed_over}"));
    }
    // A healthy pool of several standbys: which one a failover now would promote, and why
    // not the others (a pair says nothing new: its one standby is in the plan).
    if d.next != Next::Failover && !pool.servers().is_pair() {
        match &no_candidate {
            Some(why) if active.health.is_alive() => {
                decision_text.push_str(&format!("; a failover now would be blocked: {why}"))
            }
            None if !passed_over.is_empty() => decision_text.push_str(&format!(
                "; a failover now would promote {}, passing over: {passed_over}",
                pool.address(to)
            )),
            _ => {}
        }
    }
    let server = |check: &Check, role: Role| DryServer {
        role: role.as_str(),
        address: pool.address(role).to_string(),
        health: check.health.as_str(),
        message: check.message.clone(),
    };
    DryPool {
        name: pool.name.clone(),
        state: rec.state.as_str(),
        active: rec.active.as_str(),
        failures_before: rec.failures,
        failures_after: d.failures,
        max_failed_checks: pool.max_failed_checks,
        down_for_s: pool.down_for.map(|d| d.as_secs_f64()),
        threshold: pool.threshold(),
        pause: pause.cloned(),
        checks: std::iter::once(server(active, rec.active))
            .chain(
                standbys
                    .iter()
                    .map(|s| server(&checks[s.role.index()], s.role)),
            )
            .collect(),
        decision,
        decision_text,
        block_reason: match &d.next {
            Next::Block(r) => Some(r.text.clone()),
            _ => None,
        },
        second_opinion_from: pool
            .monitor
            .confirm_from
            .iter()
            .map(|h| h.name().to_string())
            .collect(),
        plan: plan_steps(pool, rec.active, to),
    }
}

/// The decision's name and what the tick would do, in words.
fn words(
    pool: &Pool,
    rec: &PoolRecord,
    d: &Decision,
    to: Role,
    pause: Option<&Pause>,
    now: i64,
) -> (&'static str, String) {
    match &d.next {
        Next::Watch if rec.state.is_locked() => {
            ("locked", "stay locked and keep watching".to_string())
        }
        Next::Watch => ("watch", "keep watching".to_string()),
        Next::Rearm => (
            "rearm",
            "re-arm the pool (the active server answers again)".to_string(),
        ),
        Next::Block(r) => ("block", format!("block the failover: {}", r.text)),
        Next::Interrupt => (
            "interrupt",
            "mark the interrupted failover as `interrupted`".to_string(),
        ),
        Next::Failover => (
            "failover",
            format!(
                "fail over to {} ({}) if every preflight passes",
                to.as_str(),
                pool.address(to)
            ),
        ),
        Next::Confirm => (
            "confirm",
            format!(
                "re-check the active server every {} until it answers or has been down for {}",
                crate::config::format_duration(pool.recheck_interval),
                crate::config::format_duration(pool.down_for.unwrap_or_default())
            ),
        ),
        Next::Paused => (
            "paused",
            format!(
                "not fail over: the pool is paused until {}",
                crate::text::format_time(pause.map_or(now, |p| p.until))
            ),
        ),
    }
}

/// The dry run as text.
fn text(pools: &[DryPool]) -> String {
    let mut out = String::new();
    for p in pools {
        let (active, standbys) = p.checks.split_first().expect("a pool has servers");
        let threshold = match p.down_for_s {
            Some(_) => format!(" (fails over {})", p.threshold),
            None => format!("/{}", p.max_failed_checks),
        };
        out.push_str(&format!(
            "pool {}: {}, active {} ({}), failures {} -> {}{threshold}\n",
            p.name, p.state, p.active, active.address, p.failures_before, p.failures_after,
        ));
        if let Some(pause) = &p.pause {
            out.push_str(&format!("  {}\n", crate::report::describe_pause(pause)));
        }
        out.push_str(&format!(
            "  active  {} {}: {}\n",
            active.address, active.health, active.message
        ));
        for standby in standbys {
            out.push_str(&format!(
                "  standby {} {}: {}\n",
                standby.address, standby.health, standby.message
            ));
        }
        out.push_str(&format!("  this tick would {}\n", p.decision_text));
        if !p.second_opinion_from.is_empty() {
            out.push_str(&format!(
                "  at the threshold, a second opinion is asked of: {}\n",
                p.second_opinion_from.join(", ")
            ));
        }
        out.push_str(&p.plan.text());
    }
    out
}

/// One pool in `tick --dry-run`.
#[derive(Debug, serde::Serialize)]
struct DryPool {
    name: String,
    state: &'static str,
    active: &'static str,
    failures_before: u32,
    failures_after: u32,
    max_failed_checks: u32,
    /// Time-based mode: how long the active server must stay down; `null` when the pool
    /// counts failed checks.
    down_for_s: Option<f64>,
    /// When the pool fails over, in words.
    threshold: String,
    pause: Option<Pause>,
    /// The active server's check, then the standby's.
    checks: Vec<DryServer>,
    decision: &'static str,
    decision_text: String,
    block_reason: Option<String>,
    second_opinion_from: Vec<String>,
    plan: FailoverPlan,
}

#[derive(Debug, serde::Serialize)]
struct DryServer {
    role: &'static str,
    address: String,
    health: &'static str,
    message: String,
}
