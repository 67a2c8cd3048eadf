//! Several watcher hosts in the namespace lab: three etcd members (etcd1..3) and three
//! deadpool members (dp1..3), each in its own network namespace with its own config and
//! state dir, each running its tick loop (`tick; sleep 1`) there, beside the MariaDB pair.
//! Run by `scripts/test` (they need root); `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use common::Instance;
use common::lab::{Lab, wait};

const PREFIX: &str = "/deadpool/lab";
const TICK: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(3);

/// The lab, its etcd cluster, and three members (not started).
struct Cluster {
    lab: Lab,
    endpoints: String,
    members: Vec<(&'static str, Instance)>,
}

impl Cluster {
    fn new() -> Cluster {
        let lab = Lab::fresh();
        lab.sh(&["cluster-up"]);
        let endpoints = lab.sh(&["etcd-endpoints"]).trim().to_string();
        let etcd: Vec<String> = endpoints.split(',').map(|e| format!("\"{e}\"")).collect();
        let pool = format!(
            r#"primary = "{db1}"
secondary = "{db2}"
max_failed_checks = 2

[monitor]
type = "mysql"
user = "{mon}"
password_file = "{mon_pw}"
timeout = "1s"

[[protocol]]
type = "plugin"
name = "one"
command = "step"

[[protocol]]
type = "plugin"
name = "two"
command = "step"
"#,
            db1 = lab.var("LAB_DB1_IP"),
            db2 = lab.var("LAB_DB2_IP"),
            mon = lab.var("LAB_MONITOR_USER"),
            mon_pw = lab.var("LAB_MONITOR_PASSWORD_FILE"),
        );
        let members = ["dp1", "dp2", "dp3"]
            .into_iter()
            .map(|name| {
                let settings = format!(
                    "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n\n[cluster]\netcd = [{}]\nname = \"{name}\"\nprefix = \"{PREFIX}\"\nlease_ttl = \"3s\"\n",
                    etcd.join(", ")
                );
                (name, Instance::with(&settings, &[("db", &pool)]))
            })
            .collect();
        Cluster {
            lab,
            endpoints,
            members,
        }
    }

    fn member(&self, name: &str) -> &Instance {
        &self.members.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn start(&self, name: &str) {
        let dir = self.member(name).dir().display().to_string();
        self.lab.sh(&["member-start", name, common::BIN, &dir]);
    }

    /// Its host dies: the tick loop is killed and its link goes down.
    fn kill_host(&self, name: &str) {
        self.lab.sh(&["member-stop", name]);
        self.lab.sh(&["link-down", name]);
    }

    /// `etcdctl get KEY`'s value, if etcd answers and has it.
    fn get(&self, key: &str) -> Option<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints, "--command-timeout=2s"])
            .args(["get", key, "--print-value-only"])
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !v.is_empty()).then_some(v)
    }

    fn leader(&self) -> Option<String> {
        self.get(&format!("{PREFIX}/leader"))
    }

    fn pool_state(&self) -> String {
        self.get(&format!("{PREFIX}/pools/db")).unwrap_or_default()
    }

    /// A member's last tick as recorded in etcd (ms).
    fn last_tick(&self, name: &str) -> i64 {
        self.get(&format!("{PREFIX}/members/{name}"))
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["last_tick"].as_i64())
            .unwrap_or(0)
    }

    /// Every member's runs of one step (`promote` calls).
    fn runs(&self, step: &str) -> usize {
        self.members
            .iter()
            .map(|(_, m)| {
                m.calls("promote")
                    .iter()
                    .filter(|l| l.starts_with(&format!("{step} ")))
                    .count()
            })
            .sum()
    }

    /// All three members ticking, dp1 the leader.
    fn start_all(&self) {
        self.start("dp1");
        wait(Duration::from_secs(15), "dp1 leads", || {
            self.leader().as_deref() == Some("dp1")
        });
        self.start("dp2");
        self.start("dp3");
        wait(Duration::from_secs(15), "every member ticks", || {
            ["dp1", "dp2", "dp3"]
                .iter()
                .all(|n| self.last_tick(n) > common::now_ms() - 3000)
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (name, _) in &self.members {
            let _ = Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/lab.sh"))
                .args(["member-stop", name])
                .output();
        }
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    the_leaders_host_dies_and_a_follower_leads_within_lease_ttl_plus_tick_interval
);
fn the_leaders_host_dies_and_a_follower_leads_within_lease_ttl_plus_tick_interval() {
    let c = Cluster::new();
    c.start_all();
    c.kill_host("dp1");
    let took = wait(Duration::from_secs(20), "a new leader", || {
        c.leader().is_some_and(|l| l != "dp1")
    });
    eprintln!("new leader after {took:?}");
    assert!(
        took <= LEASE + TICK + Duration::from_millis(1500),
        "{took:?}"
    );
    // The new leader keeps watching: its ticks go on.
    let new = c.leader().unwrap();
    let before = c.last_tick(&new);
    sleep(Duration::from_secs(3));
    assert!(c.last_tick(&new) > before);
    assert!(c.pool_state().contains("\"armed\""), "{}", c.pool_state());
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    the_primary_killed_right_after_the_leader_dies_is_failed_over_by_exactly_one_chain
);
fn the_primary_killed_right_after_the_leader_dies_is_failed_over_by_exactly_one_chain() {
    let c = Cluster::new();
    c.start_all();
    c.kill_host("dp1");
    c.lab.sh(&["kill", "db1", "mysql"]);
    wait(Duration::from_secs(30), "failed_over", || {
        c.pool_state().contains("\"failed_over\"")
    });
    sleep(Duration::from_secs(3));
    assert_eq!(c.runs("one"), 1);
    assert_eq!(c.runs("two"), 1);
    assert!(c.pool_state().contains("\"secondary\""));
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_leader_cut_off_from_etcd_runs_no_step_and_the_new_leader_fails_over
);
fn a_leader_cut_off_from_etcd_runs_no_step_and_the_new_leader_fails_over() {
    let c = Cluster::new();
    c.start_all();
    for ip in c.endpoints.split(',') {
        let ip = ip.trim_start_matches("http://").split(':').next().unwrap();
        c.lab.sh(&["cutoff", "dp1", ip]);
    }
    c.lab.sh(&["kill", "db1", "mysql"]);
    wait(Duration::from_secs(40), "failed_over", || {
        c.pool_state().contains("\"failed_over\"")
    });
    assert_ne!(c.leader().as_deref(), Some("dp1"));
    sleep(Duration::from_secs(3));
    assert!(
        c.member("dp1").calls("promote").is_empty(),
        "the member cut off from etcd ran a step"
    );
    assert_eq!(c.runs("one"), 1);
    assert_eq!(c.runs("two"), 1);
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    without_etcd_quorum_nothing_fails_over_every_member_is_critical_and_then_it_resumes
);
fn without_etcd_quorum_nothing_fails_over_every_member_is_critical_and_then_it_resumes() {
    let c = Cluster::new();
    c.start_all();
    c.lab.sh(&["etcd-kill", "etcd2"]);
    c.lab.sh(&["etcd-kill", "etcd3"]);
    c.lab.sh(&["kill", "db1", "mysql"]);
    sleep(Duration::from_secs(8));
    assert_eq!(c.runs("one"), 0, "a failover without quorum");
    for (name, m) in &c.members {
        let r = m.run(&["report", "--nagios"]);
        assert_eq!(r.code, 2, "{name}: {r:?}");
        assert!(
            r.stdout.contains("etcd unreachable or without quorum"),
            "{name}: {r:?}"
        );
    }
    c.lab.sh(&["etcd-start", "etcd2"]);
    c.lab.sh(&["etcd-start", "etcd3"]);
    wait(
        Duration::from_secs(40),
        "failed_over after quorum is back",
        || c.pool_state().contains("\"failed_over\""),
    );
    sleep(Duration::from_secs(3));
    assert_eq!(c.runs("one"), 1);
    assert_eq!(c.runs("two"), 1);
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_failed_over_pool_stays_locked_across_a_change_of_leader_and_reset_on_a_follower_rearms_it
);
fn a_failed_over_pool_stays_locked_across_a_change_of_leader_and_reset_on_a_follower_rearms_it() {
    let c = Cluster::new();
    c.start_all();
    c.lab.sh(&["kill", "db1", "mysql"]);
    wait(Duration::from_secs(30), "failed_over", || {
        c.pool_state().contains("\"failed_over\"")
    });
    c.kill_host("dp1");
    wait(Duration::from_secs(20), "a new leader", || {
        c.leader().is_some_and(|l| l != "dp1")
    });
    sleep(Duration::from_secs(3));
    assert!(
        c.pool_state().contains("\"failed_over\""),
        "{}",
        c.pool_state()
    );
    assert_eq!(c.runs("one"), 1);
    // A reset on the member that does not lead re-arms the pool cluster-wide.
    let leader = c.leader().unwrap();
    let follower = if leader == "dp2" { "dp3" } else { "dp2" };
    let r = c.member(follower).run(&["reset", "db", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    sleep(Duration::from_secs(3));
    let state = c.pool_state();
    assert!(
        state.contains("\"armed\"") && state.contains("\"secondary\""),
        "{state}"
    );
    assert_eq!(c.runs("one"), 1);
}
