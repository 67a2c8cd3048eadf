//! TLS to the database servers in the namespace lab (`lab.sh tls`): MariaDB with
//! `require_secure_transport = ON` and Redis on a TLS port only, both with certificates made
//! by the lab's own CA. Pools with a `tls` table watch and fail over through TLS; a pool
//! without one, or with a CA that did not sign the servers' certificates (a second CA made
//! by the test), sees live servers it cannot use, says so plainly, and never fails over for
//! it. Run by `scripts/test` (they need root); `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Instance;
use common::lab::Lab;

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n";

/// A lab whose servers speak TLS only.
fn tls_lab() -> Lab {
    let lab = Lab::fresh();
    lab.sh(&["tls"]);
    lab
}

/// A CA of the test's own, which signed none of the lab's certificates.
fn wrong_ca(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("wrong-ca.key"), dir.join("wrong-ca.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "1", "-subj", "/CN=not the lab's CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    cert
}

/// `tls = { ... }` for the lab: its CA (or `ca`), and its client certificate.
fn tls_table(lab: &Lab, ca: &str) -> String {
    format!(
        "tls = {{ ca_file = \"{ca}\", verify = \"full\", cert_file = \"{}\", key_file = \"{}\" }}\n",
        lab.var("LAB_TLS_CLIENT_CERT"),
        lab.var("LAB_TLS_CLIENT_KEY"),
    )
}

/// The pool's file with a line added to its `[monitor]`.
fn with_monitor_line(pool: &str, line: &str) -> String {
    pool.replacen("[monitor]\n", &format!("[monitor]\n{line}"), 1)
}

/// Both servers' monitor (health, message) in the report.
fn servers(inst: &Instance, pool: &str) -> Vec<(String, String)> {
    let p = inst.pool_json(pool);
    p["monitor"]["servers"]
        .as_array()
        .expect("servers in the report")
        .iter()
        .map(|s| {
            (
                s["health"].as_str().unwrap_or("").to_string(),
                s["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Ticks `n` times, each a failure-free run of `tick`.
fn ticks(inst: &Instance, n: usize) {
    for _ in 0..n {
        let r = inst.tick();
        assert!(r.code == 0 || r.code == 1, "{r:?}");
    }
}

/// Asserts that a pool sees both servers alive but unusable, with `expect` in both
/// messages, and has not counted a single failure after several ticks.
fn assert_alive_but_refused(inst: &Instance, pool: &str, expect: &str) {
    ticks(inst, 4);
    let seen = servers(inst, pool);
    for (health, message) in &seen {
        assert_eq!(health, "degraded", "{pool}: {seen:?}");
        assert!(
            message.contains(expect),
            "{pool}: {expect:?} in {message:?}"
        );
    }
    assert_eq!(
        inst.state_of(pool),
        ("armed".into(), "primary".into(), 0),
        "{pool}: alive servers are never counted down\n{}",
        inst.history()
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_mysql_pool_watches_and_fails_over_through_tls_and_refuses_what_it_cannot_trust
);
fn a_mysql_pool_watches_and_fails_over_through_tls_and_refuses_what_it_cannot_trust() {
    let lab = tls_lab();
    let scratch = tempfile::tempdir().unwrap();
    let wrong = wrong_ca(scratch.path());
    let good = with_monitor_line(
        &lab.mysql_pool(3, ""),
        &tls_table(&lab, lab.var("LAB_TLS_CA")),
    );
    let inst = Instance::with(
        SETTINGS,
        &[
            ("orders", &good),
            ("plain", &lab.mysql_pool(3, "")),
            (
                "wrong",
                &with_monitor_line(
                    &lab.mysql_pool(3, ""),
                    &tls_table(&lab, &wrong.to_string_lossy()),
                ),
            ),
        ],
    );

    // Over TLS: both servers up, and the step's preflight logs in (the admin account
    // requires a client certificate: REQUIRE X509).
    ticks(&inst, 1);
    let seen = servers(&inst, "orders");
    for (health, message) in &seen {
        assert_eq!(health, "up", "{seen:?}");
        assert!(message.contains("up over TLS"), "{message}");
    }
    let check = inst.run(&["check-config"]);
    assert!(
        check.stdout.contains(&format!(
            "pool orders: monitor: TLS, verify full against {}",
            lab.var("LAB_TLS_CA")
        )),
        "{check:?}"
    );
    // Nothing to warn about: monitor and preflight (logins, grants, replication) over TLS.
    assert!(!check.stdout.contains("warning: pool orders"), "{check:?}");

    // Without TLS, and with the wrong CA: alive, refused, never counted.
    assert_alive_but_refused(&inst, "plain", "require_secure_transport");
    assert_alive_but_refused(
        &inst,
        "wrong",
        &format!("is not signed by the CA in ca_file {}", wrong.display()),
    );
    let check = inst.run(&["check-config"]);
    assert!(
        check.stdout.contains("warning: pool wrong: primary")
            && check.stdout.contains("is not signed by the CA in ca_file"),
        "{check:?}"
    );

    // The primary dies: the TLS pool fails over through mysql_promote over TLS.
    lab.sh(&["kill", "db1", "mysql"]);
    ticks(&inst, 3);
    assert_eq!(
        inst.state_of("orders"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "0");
    // The others now count the dead primary, but their standby is no use to them either
    // (alive, refused): blocked, never failed over.
    for pool in ["plain", "wrong"] {
        let (state, active, _) = inst.state_of(pool);
        assert_eq!(
            (state.as_str(), active.as_str()),
            ("blocked", "primary"),
            "{pool}"
        );
    }
    let history = inst.history();
    // No secret in anything deadpool wrote.
    let monitor_password = lab.secret("LAB_MONITOR_PASSWORD_FILE");
    let key = std::fs::read_to_string(lab.var("LAB_TLS_CLIENT_KEY")).unwrap();
    let key_body = key.lines().nth(1).unwrap_or("none").to_string();
    let report = inst.run(&["report", "--full"]).stdout;
    for text in [&history, &report] {
        assert!(!text.contains(&monitor_password));
        assert!(!text.contains(&key_body));
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_redis_pool_watches_and_fails_over_through_tls_and_refuses_what_it_cannot_trust
);
fn a_redis_pool_watches_and_fails_over_through_tls_and_refuses_what_it_cannot_trust() {
    let lab = tls_lab();
    let scratch = tempfile::tempdir().unwrap();
    let wrong = wrong_ca(scratch.path());
    let good = with_monitor_line(&lab.redis_pool(3), &tls_table(&lab, lab.var("LAB_TLS_CA")));
    let no_client_cert = with_monitor_line(
        &lab.redis_pool(3),
        &format!("tls = {{ ca_file = \"{}\" }}\n", lab.var("LAB_TLS_CA")),
    );
    let inst = Instance::with(
        SETTINGS,
        &[
            ("cache", &good),
            ("plain", &lab.redis_pool(3)),
            (
                "wrong",
                &with_monitor_line(
                    &lab.redis_pool(3),
                    &tls_table(&lab, &wrong.to_string_lossy()),
                ),
            ),
            ("nocert", &no_client_cert),
        ],
    );

    ticks(&inst, 1);
    let seen = servers(&inst, "cache");
    for (health, message) in &seen {
        assert_eq!(health, "up", "{seen:?}");
        assert!(message.contains("up over TLS"), "{message}");
    }

    assert_alive_but_refused(&inst, "plain", "speaks TLS only");
    assert_alive_but_refused(
        &inst,
        "wrong",
        &format!("is not signed by the CA in ca_file {}", wrong.display()),
    );
    assert_alive_but_refused(&inst, "nocert", "client certificate");

    // The primary dies: the TLS pool fails over through redis_promote over TLS.
    lab.sh(&["kill", "db1", "redis"]);
    ticks(&inst, 3);
    assert_eq!(
        inst.state_of("cache"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    let role = lab.sh(&["redis", "db2", "INFO", "replication"]);
    assert!(role.contains("role:master"), "{role}");
    for pool in ["plain", "wrong", "nocert"] {
        let (state, active, _) = inst.state_of(pool);
        assert_eq!(
            (state.as_str(), active.as_str()),
            ("blocked", "primary"),
            "{pool}"
        );
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    observers_over_tls_see_a_live_redis_and_block_the_failover
);
fn observers_over_tls_see_a_live_redis_and_block_the_failover() {
    let lab = tls_lab();
    let mut pool = with_monitor_line(&lab.redis_pool(2), &tls_table(&lab, lab.var("LAB_TLS_CA")));
    pool = with_monitor_line(
        &pool,
        &format!(
            "confirm_from = [\"{}\", \"{}\"]\n",
            lab.var("LAB_APP1_IP"),
            lab.var("LAB_APP2_IP")
        ),
    );
    // Readiness checks of a cut-off server take the monitor's timeout: far apart, so
    // that they never keep a tick busy from one round to the next.
    let settings = lab.settings_with_ssh(None).replace(
        "system_check_interval = \"1s\"",
        "system_check_interval = \"1h\"",
    );
    let inst = Instance::with(&settings, &[("cache", &pool)]);
    ticks(&inst, 1);
    assert_eq!(servers(&inst, "cache")[0].0, "up");
    // deadpool alone is cut off from the primary; the app hosts still reach it over TLS.
    lab.sh(&["cutoff", "db1", lab.var("LAB_BRIDGE_IP")]);
    ticks(&inst, 4);
    let (state, active, _) = inst.state_of("cache");
    assert_eq!(
        (state.as_str(), active.as_str()),
        ("blocked", "primary"),
        "{}",
        inst.history()
    );
    let history = inst.history();
    assert!(
        history.contains("reaches") && history.contains("TLS alert"),
        "{history}"
    );
    // A dead primary: the observers get no TLS answer either, and the failover goes on.
    lab.sh(&["kill", "db1", "redis"]);
    ticks(&inst, 4);
    assert_eq!(
        inst.state_of("cache"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
}
