//! What `history` tells of a real failover's time, in the namespace lab: each step's time on
//! each host it touched, and the whole step's when it touched several, so the time from the
//! decision to the replica writable, the VIP moved and every client switched can be read
//! from `history` alone. Run by `scripts/test` (it needs root); `cargo test` lists it as
//! ignored.

#[macro_use]
mod common;

use serde_json::Value;

use common::Instance;
use common::lab::{Lab, VIP};

/// The chain of the benchmark: promote the replica, move the VIP, repoint both clients.
fn chain(lab: &Lab) -> String {
    let steps = lab.vip_step("") + &lab.etc_hosts_step(common::BIN, "");
    lab.mysql_pool(3, &steps)
}

/// The events of one step with a host, as (host, duration in ms, message).
fn per_host(events: &[Value], step: &str) -> Vec<(String, i64, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "step" && e["step"] == step && e["host"] != "")
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["duration_ms"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("a host's time: {e}")),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The whole step's time, recorded beside its hosts' when it touched several.
fn whole(events: &[Value], step: &str) -> i64 {
    events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == step && e["host"] == "")
        .and_then(|e| e["duration_ms"].as_i64())
        .unwrap_or_else(|| panic!("no whole-step time for `{step}`: {events:#?}"))
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    history_tells_each_steps_time_on_each_host_and_in_all
);
fn history_tells_each_steps_time_on_each_host_and_in_all() {
    let lab = Lab::fresh();
    lab.sh(&["vip", "add", "db1", &format!("{VIP}/24")]);
    lab.map_on_apps("db.service");
    let inst = Instance::with(&lab.settings_with_ssh(None), &[("db", &chain(&lab))]);
    assert_eq!(inst.tick().code, 0);

    lab.sh(&["kill", "db1", "mysql"]);
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    let events = inst.events("db");

    // The replica's promotion: one host, its own time.
    let promoted = per_host(&events, "promote replica");
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert_eq!(promoted[0].0, lab.var("LAB_DB2_IP"));

    // The VIP: the old primary's release and the new primary's add, each with its own time,
    // and the whole step's time, which holds both.
    let vip = per_host(&events, "vip");
    let hosts: Vec<&str> = vip.iter().map(|(h, _, _)| h.as_str()).collect();
    assert_eq!(
        hosts,
        [lab.var("LAB_DB1_IP"), lab.var("LAB_DB2_IP")],
        "{vip:?}"
    );
    assert!(vip[0].2.contains("released by the old primary"), "{vip:?}");
    assert!(vip[1].2.contains(&format!("{VIP} is on")), "{vip:?}");
    let vip_total = whole(&events, "vip");
    assert!(
        vip_total >= vip[0].1 + vip[1].1,
        "the release, then the add: {vip_total} ms for {vip:?}"
    );

    // Both clients switched, each with its time, and the step's in all.
    let clients = per_host(&events, "etc_hosts");
    assert_eq!(clients.len(), 2, "{clients:?}");
    let slowest = clients.iter().map(|(_, ms, _)| *ms).max().unwrap();
    assert!(whole(&events, "etc_hosts") >= slowest, "{clients:?}");

    // The text form says the same: each host's line with its time.
    let text = inst.history();
    for host in [lab.var("LAB_DB1_IP"), lab.var("LAB_DB2_IP")] {
        assert!(text.contains(&format!("[vip @ {host}]")), "{text}");
    }
    assert!(text.contains("step done on 2 host(s)"), "{text}");
}
