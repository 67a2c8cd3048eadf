//! `[cluster]` against a real etcd (one member on loopback, started by each test): two
//! deadpool members as two config dirs on this host, each with its own state dir. The
//! namespace lab (tests/lab_cluster.rs) adds three etcd members and cut links; these tests
//! need only the `etcd` and `etcdctl` binaries (Debian's etcd-server, etcd-client, which
//! `scripts/test` installs); without them they fail, saying what to install.

#[macro_use]
mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Detection, Instance, detection};

/// One etcd member on two free loopback ports, its data in a temporary dir.
struct Etcd {
    /// With TLS: the CA's certificate (clients trust it) and the server's cert and key.
    tls: Option<(String, String, String)>,
    child: Option<Child>,
    client: u16,
    peer: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// A fresh single-member etcd; fails the test loudly when etcd is not installed.
    fn start() -> Etcd {
        assert!(
            Command::new("etcd").arg("--version").output().is_ok(),
            "`etcd` is not installed: run `bash tests/lab/lab.sh install` (Debian's etcd-server and etcd-client)"
        );
        let mut etcd = Etcd::unstarted();
        etcd.resume();
        etcd
    }

    /// An etcd not started yet: plain http, two free ports, an empty temporary dir.
    fn unstarted() -> Etcd {
        Etcd {
            tls: None,
            child: None,
            client: free_port(),
            peer: free_port(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// An etcd serving https with a certificate of a CA made here, for 127.0.0.1.
    fn start_tls() -> Etcd {
        assert!(
            Command::new("etcd").arg("--version").output().is_ok()
                && Command::new("openssl").arg("version").output().is_ok(),
            "`etcd` or `openssl` is not installed: run `bash tests/lab/lab.sh install`"
        );
        let mut etcd = Etcd::unstarted();
        let d = etcd.dir.path().display().to_string();
        let script = format!(
            r#"set -e; cd {d}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=etcd -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1
' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.pem 2>/dev/null
chmod 600 *.key"#
        );
        let ok = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(ok.success(), "openssl");
        etcd.tls = Some((
            format!("{d}/ca.pem"),
            format!("{d}/server.pem"),
            format!("{d}/server.key"),
        ));
        etcd.resume();
        etcd
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client)
    }

    /// Starts (again, with the same data) and waits until it answers.
    fn resume(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let mut cmd = Command::new("etcd");
        if let Some((_, cert, key)) = &self.tls {
            cmd.args(["--cert-file", cert, "--key-file", key]);
        }
        let child = cmd
            .args(["--name", "e1", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e1={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ctl(&["get", "/x"]).is_some() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("etcd did not answer within 20 s");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcdctl ARGS`: its stdout when it succeeded.
    fn ctl(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("etcdctl");
        if let Some((ca, _, _)) = &self.tls {
            cmd.args(["--cacert", ca, "--user", "root:s3cret"]);
        }
        let out = cmd
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url(), "--command-timeout=2s"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The value etcd holds at `key`; fails the test when etcd does not answer.
    fn value(&self, key: &str) -> String {
        self.ctl(&["get", key, "--print-value-only"])
            .unwrap_or_else(|| panic!("etcdctl get {key}"))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A step plugin that logs each call and holds its `promote` while `flags/hold` exists.
const SLOW_STEP: &str = r#"#!/bin/sh
top="$(dirname "$0")/.."
echo "$DEADPOOL_STEP $1" >> "$top/steps.log"
if [ "$1" = promote ]; then
    while [ -e "$top/flags/hold-$DEADPOOL_STEP" ]; do touch "$top/holding"; sleep 0.1; done
fi
echo "$1 of $DEADPOOL_STEP ok"
"#;

/// The steps of the tests' pool: both run [`SLOW_STEP`], with time to be held.
const SLOW_STEPS: &str = r#"[[protocol]]
type = "plugin"
name = "one"
command = "slow"
timeout = "30s"

[[protocol]]
type = "plugin"
name = "two"
command = "slow"
timeout = "30s"
"#;

const LEASE: Duration = Duration::from_secs(3);

/// The common two-step pool (`db1` then `db2`, the flag-driven monitor) with its steps
/// replaced by [`SLOW_STEPS`].
fn pool() -> String {
    let (head, _steps) = common::TWO_STEP_POOL
        .split_once("[[protocol]]")
        .expect("a pool with steps");
    format!("{head}{SLOW_STEPS}")
}

fn member(etcd: &Etcd, name: &str, prefix: &str) -> Instance {
    let inst = Instance::with(
        &format!(
            "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n\n[cluster]\netcd = [\"{}\"]\nname = \"{name}\"\nprefix = \"{prefix}\"\nlease_ttl = \"3s\"\n",
            etcd.url()
        ),
        &[("db", &pool())],
    );
    inst.script("plugins/slow", SLOW_STEP);
    inst
}

/// A fresh etcd and two members of one cluster under `prefix`, `dp1` and `dp2`.
fn two_members(prefix: &str) -> (Etcd, Instance, Instance) {
    let etcd = Etcd::start();
    let dp1 = member(&etcd, "dp1", prefix);
    let dp2 = member(&etcd, "dp2", prefix);
    (etcd, dp1, dp2)
}

/// Ticks every member in turn, `rounds` times over; what the ticks return is not looked at.
fn tick_rounds(members: &[&Instance], rounds: usize) {
    for _ in 0..rounds {
        for m in members {
            m.tick();
        }
    }
}

fn both(members: &[&Instance], flag: &str) {
    for m in members {
        m.flag(flag);
    }
}

fn report(m: &Instance) -> String {
    m.run(&["report"]).stdout
}

/// Step runs (`promote` calls) of one step across members.
fn runs(members: &[&Instance], step: &str) -> usize {
    members
        .iter()
        .map(|m| {
            m.calls("promote")
                .iter()
                .filter(|l| l.starts_with(&format!("{step} ")))
                .count()
        })
        .sum()
}

both_modes!(only_the_leader_runs_the_chain_and_every_member_reports_it);
fn only_the_leader_runs_the_chain_and_every_member_reports_it() {
    let (etcd, dp1, dp2) = two_members("/t/one");
    assert_eq!(dp1.tick().code, 0);
    assert_eq!(dp2.tick().code, 0);
    let r = report(&dp2);
    assert!(r.contains("dp2 is follower, leader dp1"), "{r}");
    assert!(r.contains("dp1 ticked") && r.contains("dp2 ticked"), "{r}");
    assert!(report(&dp1).contains("dp1 is leader"));

    both(&[&dp1, &dp2], "down-db1");
    tick_rounds(&[&dp2, &dp1], 4);
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
    assert_eq!(runs(&[&dp1, &dp2], "two"), 1);
    assert!(dp2.calls("promote").is_empty(), "a follower ran a step");
    dp2.tick();
    assert_eq!(dp2.state_of("db").0, "failed_over");
    let kv = etcd.value("/t/one/pools/db");
    assert!(kv.contains("\"failed_over\""), "{kv}");
    // The chain's events show in the follower's history too, naming the member.
    let h = dp2.history();
    assert!(
        h.contains("failover_started") && h.contains("by tick@dp1"),
        "{h}"
    );
    assert!(h.contains("failed_over"), "{h}");
    assert!(
        !dp1.history().contains("@dp1"),
        "a member's own events come from its own database"
    );
}

both_modes!(a_follower_takes_over_the_pool_stays_locked_and_reset_on_a_follower_rearms_it);
fn a_follower_takes_over_the_pool_stays_locked_and_reset_on_a_follower_rearms_it() {
    let (etcd, dp1, dp2) = two_members("/t/two");
    both(&[&dp1, &dp2], "down-db1");
    tick_rounds(&[&dp1, &dp2], 3);
    assert_eq!(dp1.state_of("db").0, "failed_over");
    // dp1's host dies: it ticks no more; once its lease ran out, dp2 leads.
    let died = Instant::now();
    loop {
        dp2.tick();
        if report(&dp2).contains("dp2 is leader") {
            break;
        }
        assert!(
            died.elapsed() < LEASE + Duration::from_secs(2),
            "no takeover: {}",
            report(&dp2)
        );
        sleep(Duration::from_millis(500));
    }
    assert_eq!(
        dp2.state_of("db").0,
        "failed_over",
        "locked across the change"
    );
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);

    // A reset on a member that does not lead re-arms the pool cluster-wide.
    dp1.unflag("down-db1");
    let r = dp1.run(&["reset", "db", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    let kv = etcd.value("/t/two/pools/db");
    assert!(
        kv.contains("\"armed\"") && kv.contains("\"secondary\""),
        "{kv}"
    );
    dp2.tick();
    assert_eq!(
        dp2.state_of("db"),
        ("armed".to_string(), "secondary".to_string(), 0)
    );
}

both_modes!(a_member_that_lost_leadership_mid_chain_starts_no_further_step);
fn a_member_that_lost_leadership_mid_chain_starts_no_further_step() {
    let (etcd, dp1, dp2) = two_members("/t/three");
    both(&[&dp1, &dp2], "down-db1");
    dp1.flag("hold-one");
    dp1.ticks_before_threshold("db", 2);
    let chain = dp1.command(&["tick"]).spawn().unwrap();
    assert!(common::wait_for(
        &dp1.path("holding"),
        Duration::from_secs(10)
    ));
    // The leader key goes (as when dp1's lease ran out); dp2 takes it.
    etcd.ctl(&["del", "/t/three/leader"]).unwrap();
    dp2.tick();
    assert!(report(&dp2).contains("dp2 is leader"), "{}", report(&dp2));
    assert_eq!(dp2.state_of("db").0, "interrupted");
    let reason = dp2.pool_json("db")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("during step `one`"), "{reason}");
    // dp1's step one ends; dp1 must not start step two, nor overwrite the pool.
    dp1.unflag("hold-one");
    let out = chain.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("step `two` not started"), "{log}");
    assert_ne!(out.status.code(), Some(0), "{log}");
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
    assert_eq!(
        runs(&[&dp1, &dp2], "two"),
        0,
        "a step ran after leadership was lost"
    );
    dp2.tick();
    assert_eq!(dp2.state_of("db").0, "interrupted");
    let kv = etcd.value("/t/three/pools/db");
    assert!(kv.contains("\"interrupted\""), "{kv}");
}

both_modes!(without_etcd_nothing_fails_over_and_every_member_is_critical_then_it_resumes);
fn without_etcd_nothing_fails_over_and_every_member_is_critical_then_it_resumes() {
    let (mut etcd, dp1, dp2) = two_members("/t/four");
    tick_rounds(&[&dp1, &dp2], 1);
    both(&[&dp1, &dp2], "down-db1");
    match detection() {
        // Counting: the leader counts one failure, then etcd goes.
        Detection::Count => {
            dp1.tick();
            assert_eq!(dp1.state_of("db").2, 1);
            etcd.stop();
        }
        // With `down_for`: etcd goes while the leader re-checks the primary, before the
        // outage has lasted `down_for`. The next re-check's fenced write fails, and the
        // tick stops confirming there: no chain starts.
        Detection::Time => {
            let tick = dp1.command(&["tick"]).spawn().unwrap();
            let start = Instant::now();
            while dp1.state_of("db").2 == 0 && start.elapsed() < Duration::from_secs(10) {
                sleep(Duration::from_millis(10));
            }
            etcd.stop();
            let r = common::Run::from(tick.wait_with_output().unwrap());
            assert!(r.code == 1 && r.stderr.contains("etcd"), "{r:?}");
            assert_eq!(dp1.state_of("db").0, "armed", "{r:?}");
        }
    }
    tick_rounds(&[&dp1, &dp2], 4);
    assert_eq!(runs(&[&dp1, &dp2], "one"), 0, "a failover without etcd");
    for m in [&dp1, &dp2] {
        let r = m.run(&["report", "--nagios"]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.stdout.contains("etcd unreachable or without quorum"),
            "{r:?}"
        );
    }
    // etcd back: the leader resumes from the state it had (counting: 1 failure; with
    // `down_for`: the outage is confirmed anew within its first tick) and fails over.
    etcd.resume();
    let (mut t, start) = (0, Instant::now());
    while runs(&[&dp1, &dp2], "one") == 0 && start.elapsed() < Duration::from_secs(15) {
        tick_rounds(&[&dp1, &dp2], 1);
        t += 1;
        sleep(Duration::from_millis(200));
    }
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1, "after {t} rounds");
    assert!(t <= 3, "resumed from the state it had: {t} rounds");
    dp1.tick();
    assert_eq!(dp1.run(&["report", "--nagios"]).code, 1);
}

both_modes!(a_promote_on_a_follower_acts_cluster_wide_and_the_leader_leaves_its_chain_alone);
fn a_promote_on_a_follower_acts_cluster_wide_and_the_leader_leaves_its_chain_alone() {
    let (etcd, dp1, dp2) = two_members("/t/five");
    tick_rounds(&[&dp1, &dp2], 1);
    assert!(report(&dp2).contains("dp2 is follower, leader dp1"));
    dp2.flag("hold-one");
    let promote = dp2
        .command(&["promote", "db", "secondary", "--yes"])
        .spawn()
        .unwrap();
    assert!(common::wait_for(
        &dp2.path("holding"),
        Duration::from_secs(10)
    ));
    // The leader ticks while the promote holds its first step: it leaves the pool alone.
    tick_rounds(&[&dp1], 3);
    let kv = etcd.value("/t/five/pools/db");
    assert!(kv.contains("\"failing_over\""), "{kv}");
    dp2.unflag("hold-one");
    let out = promote.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dp1.tick();
    assert_eq!(dp1.state_of("db").0, "failed_over");
    assert_eq!(dp1.state_of("db").1, "secondary");
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
    assert_eq!(runs(&[&dp1, &dp2], "two"), 1);
    assert!(etcd.ctl(&["get", "/t/five/chains/db"]).unwrap().is_empty());
}

both_modes!(a_reset_on_a_follower_during_the_leaders_chain_is_refused);
/// The instance lock is each member's own: a reset on a follower while the leader's chain
/// runs must not re-arm the pool under it (its next step would then be fenced off, the
/// chain left half done).
fn a_reset_on_a_follower_during_the_leaders_chain_is_refused() {
    let (etcd, dp1, dp2) = two_members("/t/seven");
    tick_rounds(&[&dp1, &dp2], 1);
    assert!(report(&dp2).contains("dp2 is follower, leader dp1"));
    both(&[&dp1, &dp2], "down-db1");
    dp1.ticks_before_threshold("db", 2);
    dp1.flag("hold-one");
    let tick = dp1.command(&["tick"]).spawn().unwrap();
    assert!(common::wait_for(
        &dp1.path("holding"),
        Duration::from_secs(10)
    ));
    let r = dp2.run(&["reset", "db", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("failing_over in etcd") && r.stderr.contains("nothing changed"),
        "{r:?}"
    );
    let kv = etcd.value("/t/seven/pools/db");
    assert!(kv.contains("\"failing_over\""), "{kv}");
    dp1.unflag("hold-one");
    let out = tick.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dp1.state_of("db").0, "failed_over");
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
    assert_eq!(runs(&[&dp1, &dp2], "two"), 1);
}

both_modes!(a_renamed_locked_pool_is_adopted_cluster_wide);
/// A locked pool renamed on every member: held back everywhere; `reset NEW --adopt OLD` on
/// a follower moves the record in etcd (the old key gone, the new one locked); a member
/// that still holds the old record reports it until it is dropped there too.
fn a_renamed_locked_pool_is_adopted_cluster_wide() {
    let (etcd, dp1, dp2) = two_members("/t/eight");
    both(&[&dp1, &dp2], "down-db1");
    tick_rounds(&[&dp1, &dp2], 3);
    assert_eq!(dp2.state_of("db").0, "failed_over");
    for m in [&dp1, &dp2] {
        std::fs::rename(m.path("pools/db.toml"), m.path("pools/orders.toml")).unwrap();
        m.tick();
        let r = report(m);
        assert!(r.contains("held back by the lock of pool db"), "{r}");
    }
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
    let r = dp2.run(&["reset", "orders", "--adopt", "db", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(etcd.ctl(&["get", "/t/eight/pools/db"]).unwrap().is_empty());
    let kv = etcd.value("/t/eight/pools/orders");
    assert!(
        kv.contains("\"failed_over\"") && kv.contains("\"secondary\""),
        "{kv}"
    );
    dp2.tick();
    assert!(!report(&dp2).contains("held back"), "{}", report(&dp2));
    dp1.tick();
    let r = report(&dp1);
    assert!(
        r.contains("held back by the lock of pool db"),
        "dp1 still holds db's record: {r}"
    );
    let r = dp1.run(&["reset", "db", "--forget", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    dp1.tick();
    assert!(
        !report(&dp1).contains("no longer configured"),
        "{}",
        report(&dp1)
    );
    assert_eq!(
        dp1.state_of("orders"),
        ("failed_over".to_string(), "secondary".to_string(), 0)
    );
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
}

both_modes!(https_endpoints_with_a_ca_file_and_etcd_authentication);
fn https_endpoints_with_a_ca_file_and_etcd_authentication() {
    let etcd = Etcd::start_tls();
    // Authentication on: a user root with a password (etcdctl as root from then on).
    let plain = |args: &[&str]| {
        let (ca, _, _) = etcd.tls.as_ref().unwrap();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.url(), "--cacert", ca])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    plain(&["user", "add", "root", "--new-user-password=s3cret"]);
    plain(&["auth", "enable"]);
    let (ca, _, _) = etcd.tls.clone().unwrap();
    let dp1 = member(&etcd, "dp1", "/t/tls");
    let mut toml = std::fs::read_to_string(dp1.path("deadpool.toml")).unwrap();
    toml.push_str(&format!(
        "ca_file = \"{ca}\"\nuser = \"root\"\npassword_file = \"etcd-password\"\n"
    ));
    dp1.write("deadpool.toml", &toml);
    dp1.write("etcd-password", "s3cret\n");
    std::fs::set_permissions(
        dp1.path("etcd-password"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let r = dp1.run(&["check-config"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("cluster: etcd 3.") && r.stdout.contains("is writable"),
        "{r:?}"
    );
    assert_eq!(dp1.tick().code, 0);
    assert!(report(&dp1).contains("dp1 is leader"), "{}", report(&dp1));
    assert_eq!(etcd.value("/t/tls/leader").trim(), "dp1");

    // A wrong password: etcd refuses, nothing leads here, and the report says why.
    dp1.write("etcd-password", "wrong\n");
    dp1.tick();
    let r = dp1.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("etcd refused user `root`"), "{r:?}");
}

both_modes!(a_pause_on_a_follower_holds_the_leaders_failover_until_resume);
fn a_pause_on_a_follower_holds_the_leaders_failover_until_resume() {
    let (_etcd, dp1, dp2) = two_members("/t/six");
    tick_rounds(&[&dp1, &dp2], 1);
    let r = dp2.run(&["pause", "db", "--for", "1h", "--reason", "maintenance"]);
    assert_eq!(r.code, 0, "{r:?}");
    both(&[&dp1, &dp2], "down-db1");
    tick_rounds(&[&dp1], 4);
    assert_eq!(
        runs(&[&dp1, &dp2], "one"),
        0,
        "the leader failed over a paused pool"
    );
    let r = dp2.run(&["resume", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    tick_rounds(&[&dp1], 4);
    assert_eq!(runs(&[&dp1, &dp2], "one"), 1);
}
