//! The `dns` and `haproxy` steps against real servers in the namespace lab: named serving
//! the dynamic zone `lab.internal` with a TSIG key (ns1), and two HAProxy in TCP mode
//! before the MariaDB pair (lb1, lb2) that app hosts connect through. Run by `scripts/test`
//! (they need root); `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::Instance;
use common::lab::Lab;

fn lab_sh() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lab/lab.sh")
        .display()
        .to_string()
}

/// A `dns` step for the lab's record, signed with the key in `secret_file`.
fn dns_step(lab: &Lab, secret_file: &str) -> String {
    format!(
        r#"
[[protocol]]
type = "dns"
server = "{ns1}"
zone = "{zone}"
service_host_name = "{name}"
ttl = "{ttl}s"
tsig_key = "{key}"
tsig_secret_file = "{secret_file}"
verify_servers = ["{ns1}:{alt}"]
timeout = "10s"
"#,
        ns1 = lab.var("LAB_NS1_IP"),
        zone = lab.var("LAB_ZONE"),
        name = lab.var("LAB_DNS_NAME"),
        ttl = lab.var("LAB_DNS_TTL"),
        alt = lab.var("LAB_DNS_ALT_PORT"),
        key = lab.var("LAB_TSIG_KEY"),
    )
}

/// A `dns` step signed with the lab's own key, the one ns1 knows.
fn dns_step_with_lab_key(lab: &Lab) -> String {
    dns_step(lab, lab.var("LAB_TSIG_SECRET_FILE"))
}

/// A local `exec` step running `lab.sh ARGS` (a fault between the preflight and the action).
fn lab_step(name: &str, args: &str) -> String {
    format!(
        "\n[[protocol]]\ntype = \"exec\"\nname = \"{name}\"\nhosts = [\"local\"]\nexec_command = \"bash {} {args}\"\n",
        lab_sh()
    )
}

fn haproxy_step(sockets: &[String]) -> String {
    format!(
        r#"
[[protocol]]
type = "haproxy"
backend = "mysql"
servers = {{ primary = "db1", secondary = "db2" }}
sockets = [{}]
timeout = "5s"
"#,
        sockets
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// What ns1 answers for the lab's record.
fn record(lab: &Lab) -> String {
    lab.sh(&["dig"]).trim().to_string()
}

fn kill_primary_and_tick(lab: &Lab, inst: &Instance, ticks: usize) {
    lab.sh(&["kill", "db1", "mysql"]);
    for _ in 0..ticks {
        let started = Instant::now();
        inst.tick();
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "a tick must stay bounded"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Ticks until the pool leaves `blocked` (a changed config takes effect on the next tick).
fn tick_until_not_blocked(inst: &Instance) {
    for _ in 0..3 {
        inst.tick();
        if inst.state_of("db").0 != "blocked" {
            return;
        }
    }
}

/// `admin` or `operational` state of one server in a lab HAProxy's backend, from
/// `show servers state` (columns 6 and 7).
fn haproxy_server(lab: &Lab, lb: &str, server: &str) -> (u32, u32) {
    let out = lab.sh(&["haproxy", lb, "show servers state mysql"]);
    let row = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() > 6 && w[3] == server)
        .unwrap_or_else(|| panic!("no {server} in:\n{out}"));
    (row[5].parse().unwrap(), row[6].parse().unwrap())
}

/// Maintenance (HAProxy's forced, inherited or resolution flags).
fn in_maint(state: (u32, u32)) -> bool {
    state.1 & 0x23 != 0
}

/// Ready: neither in maintenance nor draining (whatever its health check says).
fn ready(state: (u32, u32)) -> bool {
    state.1 & (0x23 | 0x18) == 0
}

/// Ready and UP.
fn serving(state: (u32, u32)) -> bool {
    ready(state) && state.0 == 2
}

/// SQL through a lab HAProxy from app1, as the application user.
fn through(lab: &Lab, lb_ip: &str, sql: &str) -> (bool, String) {
    lab.in_ns(
        "LAB_APP1_NS",
        &format!(
            "MYSQL_PWD=$(cat {}) mariadb --connect-timeout=3 -h {lb_ip} -u {} -N -e \"{sql}\"",
            lab.var("LAB_WRITER_PASSWORD_FILE"),
            lab.var("LAB_WRITER_USER"),
        ),
    )
}

/// An instance with one pool, `db`: the lab's MySQL pair, promoted, then `steps`.
fn instance_with_db(lab: &Lab, steps: &str) -> Instance {
    Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool(3, steps))],
    )
}

/// The first tick finds `db` healthy: it exits 0 and so does the Nagios report.
#[track_caller]
fn assert_first_tick_healthy(inst: &Instance) {
    assert_eq!(inst.tick().code, 0);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 0, "{}", inst.run(&["report"]).stdout);
}

/// `db` failed over to the secondary and counts no failure since.
#[track_caller]
fn assert_failed_over_to_secondary(inst: &Instance) {
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
}

/// Why `db` is blocked (asserting that it is).
#[track_caller]
fn blocked_reason(inst: &Instance) -> String {
    assert_eq!(inst.state_of("db").0, "blocked", "{}", inst.history());
    inst.pool_json("db")["reason"].as_str().unwrap().to_string()
}

/// Rewrites `db` so that `fault` (a [`lab_step`]) runs right before `step`: after every
/// preflight has passed, before `step` acts.
fn write_fault_before(lab: &Lab, inst: &Instance, fault: &str, step: &str) {
    inst.write_pool("db", &lab.mysql_pool(3, &format!("{fault}{step}")));
}

/// The history of a `db` that ended in `failover_failed` (asserting that it did).
#[track_caller]
fn failover_failed_history(inst: &Instance) -> String {
    assert_eq!(
        inst.state_of("db").0,
        "failover_failed",
        "{}",
        inst.history()
    );
    inst.history()
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    dns_kill_9_switches_the_record_and_the_server_answers_the_new_address
);
fn dns_kill_9_switches_the_record_and_the_server_answers_the_new_address() {
    let lab = Lab::fresh();
    let inst = instance_with_db(&lab, &dns_step_with_lab_key(&lab));
    assert_first_tick_healthy(&inst);
    assert_eq!(record(&lab), lab.var("LAB_DB1_IP"));

    kill_primary_and_tick(&lab, &inst, 3);
    assert_failed_over_to_secondary(&inst);
    // From an app host, through the lab network: the server answers the new address.
    let (ok, seen) = lab.in_ns(
        "LAB_APP1_NS",
        &format!(
            "dig @{} +short +norecurse {} A",
            lab.var("LAB_NS1_IP"),
            lab.var("LAB_DNS_NAME")
        ),
    );
    assert!(ok && seen == lab.var("LAB_DB2_IP"), "{seen}");
    let history = inst.history();
    assert!(
        history.contains(
            "db.lab.internal. A -> 10.213.0.12 at 10.213.0.153 (was 10.213.0.11), TTL 30s"
        ),
        "{history}"
    );

    inst.tick();
    let full = inst.run(&["report", "--full"]).stdout;
    for needed in [
        "2. dns (dns)",
        "10.213.0.153 db.lab.internal. A -> 10.213.0.12 (active), TTL 30s",
        "10.213.0.153:5353 db.lab.internal. -> 10.213.0.12 (active)",
    ] {
        assert!(full.contains(needed), "`{needed}` missing from:\n{full}");
    }
    assert_eq!(inst.pool_json("db")["steps"][1]["status"], "OK", "{full}");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    dns_wrong_key_blocks_and_a_key_changed_during_the_chain_fails_the_step
);
fn dns_wrong_key_blocks_and_a_key_changed_during_the_chain_fails_the_step() {
    let lab = Lab::fresh();
    let inst = Instance::with(&lab.settings_with_ssh(None), &[]);
    // A secret of the right form that the server does not have.
    inst.write(
        "tsig-wrong",
        "c29tZW9uZSBlbHNlJ3Mgc2VjcmV0IGZvciB0aGlzIGtleQ==\n",
    );
    std::fs::set_permissions(inst.path("tsig-wrong"), PermissionsExt::from_mode(0o600)).unwrap();
    inst.write_pool("db", &lab.mysql_pool(3, &dns_step(&lab, "tsig-wrong")));
    inst.tick();
    kill_primary_and_tick(&lab, &inst, 3);
    let reason = blocked_reason(&inst);
    assert!(
        reason.contains("refused the signature of TSIG key `deadpool-lab` (NOTAUTH(BADSIG))")
            && reason.contains("tsig-wrong"),
        "{reason}"
    );
    assert!(
        !reason.contains("c29tZW9uZSBlbHNl"),
        "the secret leaked: {reason}"
    );
    assert_eq!(record(&lab), lab.var("LAB_DB1_IP"));
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "1");

    // The right key; the server gets a new secret between the preflight and the action.
    let rekey = lab_step("rekey the server", "dns-rekey");
    write_fault_before(&lab, &inst, &rekey, &dns_step_with_lab_key(&lab));
    tick_until_not_blocked(&inst);
    let history = failover_failed_history(&inst);
    assert!(
        history.contains(
            "[dns @ 10.213.0.153] NOT changed: 10.213.0.153:53 refused the signature of TSIG key `deadpool-lab`"
        ),
        "{history}"
    );
    assert_eq!(record(&lab), lab.var("LAB_DB1_IP"));
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    dns_record_changed_by_someone_else_is_never_overwritten
);
fn dns_record_changed_by_someone_else_is_never_overwritten() {
    let lab = Lab::fresh();
    let inst = instance_with_db(&lab, &dns_step_with_lab_key(&lab));
    inst.tick();
    // Before the failover: the preflight sees it and nothing runs.
    lab.sh(&["dns-set", "10.213.0.99"]);
    kill_primary_and_tick(&lab, &inst, 3);
    let reason = blocked_reason(&inst);
    assert!(
        reason.contains("is 10.213.0.99 (TTL 30s) at 10.213.0.153, not 10.213.0.11 (the old primary): someone else changed it"),
        "{reason}"
    );
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "1");

    // During the chain: the prerequisite fails and the other value stays.
    lab.sh(&["dns-set", lab.var("LAB_DB1_IP")]);
    let overwrite = lab_step("someone else", "dns-set 10.213.0.77");
    write_fault_before(&lab, &inst, &overwrite, &dns_step_with_lab_key(&lab));
    tick_until_not_blocked(&inst);
    let history = failover_failed_history(&inst);
    assert!(
        history.contains("[dns @ 10.213.0.153] NOT changed: db.lab.internal. A is 10.213.0.77 (TTL 30s) at 10.213.0.153, not 10.213.0.11 (the old primary); someone else changed it and deadpool does not overwrite it"),
        "{history}"
    );
    assert_eq!(record(&lab), "10.213.0.77");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    haproxy_kill_9_switches_every_proxy_and_client_writes_reach_the_new_primary
);
fn haproxy_kill_9_switches_every_proxy_and_client_writes_reach_the_new_primary() {
    let lab = Lab::fresh();
    let (lb1, lb2) = (lab.var("LAB_LB1_IP"), lab.var("LAB_LB2_IP"));
    // lb1 through an SSH channel to its unix socket, lb2 through one to its TCP socket.
    let sockets = [
        format!("{lb1}:{}", lab.var("LAB_LB1_HAPROXY_SOCKET")),
        format!("{lb2}:{lb2}:{}", lab.var("LAB_HAPROXY_STATS_PORT")),
    ];
    let inst = instance_with_db(&lab, &haproxy_step(&sockets));
    assert_first_tick_healthy(&inst);
    assert_eq!(through(&lab, lb1, "SELECT @@server_id"), (true, "1".into()));

    kill_primary_and_tick(&lab, &inst, 3);
    assert_failed_over_to_secondary(&inst);
    for lb in ["lb1", "lb2"] {
        assert!(in_maint(haproxy_server(&lab, lb, "db1")), "{lb}");
        assert!(serving(haproxy_server(&lab, lb, "db2")), "{lb}");
    }
    // The application writes through either proxy and the rows are on the new primary.
    let create = "CREATE TABLE IF NOT EXISTS app.via_lb (id INT PRIMARY KEY, lb VARCHAR(8))";
    for (id, (name, ip)) in [("lb1", lb1), ("lb2", lb2)].into_iter().enumerate() {
        let (ok, said) = through(
            &lab,
            ip,
            &format!(
                "{create}; INSERT INTO app.via_lb VALUES ({id}, '{name}'); SELECT @@server_id"
            ),
        );
        assert!(ok && said == "2", "through {name}: {said}");
    }
    assert_eq!(
        lab.sql("db2", "SELECT lb FROM app.via_lb ORDER BY id"),
        "lb1\nlb2"
    );

    inst.tick();
    let full = inst.run(&["report", "--full"]).stdout;
    assert_eq!(
        full.matches("db2 serves: db1 MAINT, db2 ready UP").count(),
        2,
        "{full}"
    );
    let history = inst.history();
    assert!(
        history.contains(&format!("[haproxy @ {}] switched to db2", sockets[0]))
            && history.contains(&format!("[haproxy @ {}] switched to db2", sockets[1])),
        "{history}"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    haproxy_unreachable_proxy_blocks_at_preflight_and_fails_the_step_while_the_other_switches
);
fn haproxy_unreachable_proxy_blocks_at_preflight_and_fails_the_step_while_the_other_switches() {
    let lab = Lab::fresh();
    let (lb1, lb2) = (lab.var("LAB_LB1_IP"), lab.var("LAB_LB2_IP"));
    // lb1 through its unix socket on this host, lb2 over TCP from here.
    let lb2_socket = format!("{lb2}:{}", lab.var("LAB_HAPROXY_STATS_PORT"));
    let sockets = [
        lab.var("LAB_LB1_HAPROXY_SOCKET").to_string(),
        lb2_socket.clone(),
    ];
    let inst = instance_with_db(&lab, &haproxy_step(&sockets));
    inst.tick();

    // Unreachable before the failover: blocked, nothing changed.
    lab.sh(&["hang", "lb2"]);
    kill_primary_and_tick(&lab, &inst, 3);
    let reason = blocked_reason(&inst);
    assert!(
        reason.contains(&format!("{lb2_socket}: cannot reach HAProxy")),
        "{reason}"
    );
    assert!(
        ready(haproxy_server(&lab, "lb1", "db1")),
        "lb1 was not switched"
    );
    assert!(in_maint(haproxy_server(&lab, "lb1", "db2")));
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "1");

    // Unreachable after the preflight: lb2 fails the step, lb1 is switched all the same.
    lab.sh(&["unhang", "lb2"]);
    let cut_lb2 = lab_step("cut lb2 off", "hang lb2");
    write_fault_before(&lab, &inst, &cut_lb2, &haproxy_step(&sockets));
    let started = Instant::now();
    tick_until_not_blocked(&inst);
    assert!(started.elapsed() < Duration::from_secs(40));
    let history = failover_failed_history(&inst);
    assert!(
        history.contains(&format!(
            "[haproxy @ {lb2_socket}] NOT switched: cannot reach HAProxy"
        )) && history.contains(&format!("[haproxy @ {}] switched to db2", sockets[0])),
        "{history}"
    );
    assert!(in_maint(haproxy_server(&lab, "lb1", "db1")));
    assert!(serving(haproxy_server(&lab, "lb1", "db2")));
    let (ok, said) = through(
        &lab,
        lb1,
        "CREATE TABLE app.after (id INT PRIMARY KEY); INSERT INTO app.after VALUES (1); SELECT @@server_id",
    );
    assert!(ok && said == "2", "{said}");
    assert_eq!(lab.sql("db2", "SELECT id FROM app.after"), "1");
    lab.sh(&["unhang", "lb2"]);
    assert!(
        ready(haproxy_server(&lab, "lb2", "db1")) && in_maint(haproxy_server(&lab, "lb2", "db2")),
        "lb2 was never reached, so it is as it was"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    the_tsig_secret_appears_nowhere
);
/// The TSIG secret, right or wrong, appears in no output, history, database file or process
/// argument list, and its key files are gone after each update.
fn the_tsig_secret_appears_nowhere() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let lab = Lab::fresh();
    let secret = lab.secret("LAB_TSIG_SECRET_FILE");
    let wrong = "V3JvbmdCdXRTZWNyZXRUc2lnS2V5IQ==";
    let tmp = tempfile::tempdir().unwrap();
    let wrong_file = tmp.path().join("wrong");
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    std::fs::set_permissions(&wrong_file, PermissionsExt::from_mode(0o600)).unwrap();
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[
            ("db", &lab.mysql_pool(3, &dns_step_with_lab_key(&lab))),
            (
                "wrongkey",
                &lab.mysql_pool(3, &dns_step(&lab, &wrong_file.display().to_string())),
            ),
        ],
    );
    // A private temp dir for this run, to see that nothing is left in it.
    let tmpdir = tempfile::tempdir().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let argv = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (stop, argv) = (stop.clone(), argv.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if text.contains("nsupdate") || text.contains("dig") {
                            argv.lock().unwrap().push(text);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let mut full = vec!["-vv"];
        full.extend_from_slice(args);
        let r = inst
            .command(&full)
            .env("TMPDIR", tmpdir.path())
            .output()
            .unwrap();
        outputs.push(format!(
            "{args:?}\n{}\n{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        ));
    };
    run(&["check-config"]);
    run(&["tick"]);
    run(&["tick", "--dry-run"]);
    lab.sh(&["kill", "db1", "mysql"]);
    for _ in 0..3 {
        run(&["tick"]);
    }
    run(&["report", "--json"]);
    run(&["history", "--json", "--limit", "10000"]);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    assert_eq!(inst.state_of("wrongkey").0, "blocked", "{}", inst.history());
    let sampled = argv.lock().unwrap();
    assert!(
        sampled.iter().any(|a| a.contains("nsupdate -v")),
        "the argv watcher saw no nsupdate"
    );
    let mut places: Vec<(String, String)> = outputs
        .into_iter()
        .map(|o| ("command output".to_string(), o))
        .collect();
    for file in ["state/deadpool.db", "state/deadpool.db-wal"] {
        if let Ok(bytes) = std::fs::read(inst.path(file)) {
            places.push((file.into(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    places.push(("process argument lists".into(), sampled.join("\n")));
    for s in [secret.as_str(), wrong] {
        for (place, text) in &places {
            assert!(!text.contains(s), "a TSIG secret appears in {place}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(tmpdir.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "key files left behind: {left:?}");
}
