//! Redis pools against real redis-server in the namespace lab, next to a MySQL pool in the
//! same instance, and two instances side by side. Run by `scripts/test` (they need root);
//! `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lab::Lab;
use common::{Detection, Instance, detection};

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n";

/// A minimal Redis client for the test's own writes (RESP over TCP).
struct Resp(BufReader<TcpStream>);

impl Resp {
    fn connect(host: &str, password: &str) -> Resp {
        let s = TcpStream::connect_timeout(
            &format!("{host}:6379").parse().unwrap(),
            Duration::from_secs(2),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = Resp(BufReader::new(s));
        assert_eq!(r.call(&["AUTH", password]), "+OK");
        r
    }

    /// Sends a command, returns the first reply line (`+OK`, `-READONLY ...`, `:1`, `$3`...).
    fn call(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        if self.0.get_mut().write_all(out.as_bytes()).is_err() {
            return "-connection lost".into();
        }
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => return "-connection lost".into(),
        }
        let line = line.trim_end().to_string();
        if let Some(len) = line.strip_prefix('$').and_then(|l| l.parse::<usize>().ok()) {
            let mut body = vec![0u8; len + 2];
            std::io::Read::read_exact(&mut self.0, &mut body).unwrap();
            return String::from_utf8_lossy(&body[..len]).into_owned();
        }
        line
    }
}

fn redis_role(lab: &Lab, host: &str) -> String {
    lab.sh(&["redis", host, "INFO", "replication"])
        .lines()
        .filter(|l| l.starts_with("role:") || l.starts_with("master_host:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn two_pools(lab: &Lab) -> Instance {
    Instance::with(
        SETTINGS,
        &[
            ("orders", &lab.mysql_pool(3, "")),
            ("cache", &lab.redis_pool(3)),
        ],
    )
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_redis_failure_fails_over_only_the_redis_pool
);
fn a_redis_failure_fails_over_only_the_redis_pool() {
    let lab = Lab::fresh();
    let inst = two_pools(&lab);
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );
    lab.sh(&["kill", "db1", "redis"]);
    inst.ticks_before_threshold("cache", 2);
    inst.tick();
    assert_eq!(
        inst.state_of("cache"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(
        inst.state_of("orders"),
        ("armed".into(), "primary".into(), 0)
    );
    assert_eq!(redis_role(&lab, "db2"), "role:master");
    assert_eq!(
        lab.sql("db2", "SELECT @@global.read_only"),
        "1",
        "the MySQL replica is untouched"
    );
    let full = inst.run(&["report", "--full"]).stdout;
    assert!(
        full.contains("pool cache\n") && full.contains("pool orders\n"),
        "{full}"
    );
    assert!(
        full.contains("monitor redis") && full.contains("monitor mysql"),
        "{full}"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_mysql_failure_fails_over_only_the_mysql_pool
);
fn a_mysql_failure_fails_over_only_the_mysql_pool() {
    let lab = Lab::fresh();
    let inst = two_pools(&lab);
    inst.tick();
    lab.sh(&["kill", "db1", "mysql"]);
    inst.ticks_before_threshold("orders", 2);
    inst.tick();
    assert_eq!(
        inst.state_of("orders"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    assert_eq!(
        inst.state_of("cache"),
        ("armed".into(), "primary".into(), 0)
    );
    assert_eq!(
        redis_role(&lab, "db2"),
        "role:slave master_host:10.213.0.11"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    manual_promote_swaps_redis_roles_without_losing_an_acknowledged_write
);
fn manual_promote_swaps_redis_roles_without_losing_an_acknowledged_write() {
    let lab = Lab::fresh();
    let inst = Instance::with(SETTINGS, &[("cache", &lab.redis_pool(3))]);
    inst.tick();
    let password = lab.secret("LAB_REDIS_PASSWORD_FILE");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (stop, acked, password) = (stop.clone(), acked.clone(), password.clone());
        std::thread::spawn(move || {
            let mut r = Resp::connect("10.213.0.11", &password);
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let reply = r.call(&["SET", &format!("k{i}"), "v"]);
                if reply != "+OK" {
                    return reply;
                }
                acked.lock().unwrap().push(i);
            }
            "stopped".to_string()
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let r = inst.run(&["promote", "cache", "secondary", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let why = writer.join().unwrap();
    assert!(
        why.contains("READONLY"),
        "writes must stop on the old primary: {why}"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "too few writes: {}", acked.len());
    let mut new = Resp::connect("10.213.0.12", &password);
    let missing: Vec<&u32> = acked
        .iter()
        .filter(|i| new.call(&["EXISTS", &format!("k{i}")]) != ":1")
        .collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    assert_eq!(redis_role(&lab, "db2"), "role:master");
    assert_eq!(
        redis_role(&lab, "db1"),
        "role:slave master_host:10.213.0.12"
    );
    assert_eq!(
        inst.state_of("cache"),
        ("failed_over".into(), "secondary".into(), 0)
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    two_instances_run_side_by_side_and_stay_apart
);
fn two_instances_run_side_by_side_and_stay_apart() {
    let lab = Lab::fresh();
    let a = Instance::with(SETTINGS, &[("cache", &lab.redis_pool(3))]);
    let b = Instance::with(SETTINGS, &[("orders", &lab.mysql_pool(3, ""))]);
    let tick_both = || {
        let (x, y) = (
            a.command(&["tick"]).spawn().unwrap(),
            b.command(&["tick"]).spawn().unwrap(),
        );
        assert!(x.wait_with_output().unwrap().status.code().unwrap() <= 1);
        assert!(y.wait_with_output().unwrap().status.code().unwrap() <= 1);
    };
    tick_both();
    lab.sh(&["kill", "db1", "redis"]);
    for _ in 0..3 {
        tick_both();
    }
    assert_eq!(a.state_of("cache").0, "failed_over");
    assert_eq!(b.state_of("orders"), ("armed".into(), "primary".into(), 0));
    assert!(!b.history().contains("failover"), "{}", b.history());
    for inst in [&a, &b] {
        assert!(
            inst.path("state/deadpool.db").exists() && inst.path("state/deadpool.lock").exists()
        );
    }
    assert_eq!(
        b.run(&["report", "--nagios"]).code,
        0,
        "{}",
        b.run(&["report"]).stdout
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    broken_redis_setups_give_clear_messages_never_a_hang
);
fn broken_redis_setups_give_clear_messages_never_a_hang() {
    let lab = Lab::fresh();
    let good = lab.redis_pool(3);
    redis_wrong_password_is_alive(&lab, &good);
    redis_closed_port_is_down(&good);
    redis_standby_no_longer_a_replica(&lab, &good);
    redis_hung_primary_is_bounded(&lab, &good);
}

/// A wrong password: the server is alive, never counted as down.
fn redis_wrong_password_is_alive(lab: &Lab, good: &str) {
    // In a directory of its own: deadpool refuses a secret that sits in /tmp itself.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let pool = good.replacen(
        lab.var("LAB_REDIS_PASSWORD_FILE"),
        &wrong.display().to_string(),
        1,
    );
    let inst = Instance::with(SETTINGS, &[("cache", &pool)]);
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert!(r.code >= 1, "{r:?}");
    assert!(
        r.stdout
            .contains("alive but refused: AUTH refused: WRONGPASS"),
        "{r:?}"
    );
    assert_eq!(
        inst.state_of("cache").2,
        0,
        "an auth error is never counted as down"
    );
}

/// A closed port on both servers: down, with the reason.
fn redis_closed_port_is_down(good: &str) {
    // A closed port on both servers: down, with the reason. Counting, one tick shows the
    // count and why; with `down_for` that tick confirms the outage and is blocked, since
    // the standby is down too.
    let pool = good.replacen("timeout = \"1s\"", "timeout = \"1s\"\nport = 6380", 1);
    let inst = Instance::with(SETTINGS, &[("cache", &pool)]);
    inst.tick();
    let refused = "10.213.0.11:6380: Connection refused";
    assert!(
        inst.run(&["report"]).stdout.contains(refused),
        "{}",
        inst.run(&["report"]).stdout
    );
    let r = inst.run(&["report", "--nagios"]);
    match detection() {
        Detection::Count => assert!(r.stdout.contains(refused), "{r:?}"),
        Detection::Time => assert!(
            r.stdout
                .contains("blocked: the active server is down and the standby is down too"),
            "{r:?}"
        ),
    }
}

/// A standby that is no longer a replica, then a replica again.
fn redis_standby_no_longer_a_replica(lab: &Lab, good: &str) {
    // A standby that is no longer a replica.
    let inst = Instance::with(SETTINGS, &[("cache", good)]);
    inst.tick();
    lab.sh(&["redis", "db2", "REPLICAOF", "NO", "ONE"]);
    std::thread::sleep(Duration::from_millis(1100));
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("standby is a primary, not a replica"),
        "{r:?}"
    );
    assert!(r.stdout.contains("split-brain risk"), "{r:?}");
    // And a replica again, in sync, for what follows.
    lab.sh(&["redis", "db2", "REPLICAOF", "10.213.0.11", "6379"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .sh(&["redis", "db2", "INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "db2 did not resync with db1");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A hung primary: every check ends at the timeout.
fn redis_hung_primary_is_bounded(lab: &Lab, good: &str) {
    // A hung primary: every check ends at the timeout. Counting, one tick counts it once;
    // with `down_for`, that tick re-checks it for that long, plus the last re-check's
    // timeout, and fails over.
    let inst = Instance::with(SETTINGS, &[("cache", good)]);
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );
    lab.sh(&["stop", "db1", "redis"]);
    let confirming = match detection() {
        Detection::Count => Duration::ZERO,
        Detection::Time => common::down_for(3) + Duration::from_secs(1),
    };
    let started = Instant::now();
    inst.tick();
    assert!(
        started.elapsed() < Duration::from_secs(6) + confirming,
        "{:?}",
        started.elapsed()
    );
    let primary = inst.pool_json("cache")["monitor"]["servers"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        primary.contains("timed out") || primary.contains("no answer"),
        "{primary}"
    );
    if detection() == Detection::Count {
        let r = inst.run(&["report", "--nagios"]);
        assert!(
            r.stdout.contains("timed out") || r.stdout.contains("no answer"),
            "{r:?}"
        );
    }
    let expected = match detection() {
        Detection::Count => ("armed".into(), "primary".into(), 1),
        Detection::Time => ("failed_over".into(), "secondary".into(), 0),
    };
    assert_eq!(inst.state_of("cache"), expected, "{}", inst.history());
    lab.sh(&["cont", "db1", "redis"]);
}
