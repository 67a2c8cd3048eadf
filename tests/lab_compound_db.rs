//! An old primary that answers, but not as asked, against real servers in the namespace lab:
//! deadpool never promotes around it (SPEC 6.3, no second writable primary by its hand). A
//! MySQL primary out of connections is alive, not down; a VIP the old primary will not
//! release is not added on the new one; a manual promote toward a replica on binlog
//! file/position waits for that position. Run by `scripts/test` (they need root); `cargo
//! test` lists them as ignored.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::Instance;
use common::lab::{Lab, VIP, Writer, lab_sh, mysql_conn};
use mysql::prelude::Queryable;

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n";

/// Error 1040, "Too many connections".
const TOO_MANY_CONNECTIONS: u16 = 1040;

/// The MySQL error code a login as `user` on `host` gets (`None` when it succeeds).
fn login_error(lab: &Lab, host: &str, user: &str, password_var: &str) -> Option<u16> {
    match mysql_conn(lab, host, user, password_var) {
        Ok(_) => None,
        Err(mysql::Error::MySqlError(e)) => Some(e.code),
        Err(e) => panic!("{user}@{host}: no answer from the server: {e}"),
    }
}

/// Takes every connection `host` will give: first the ordinary ones (as the application),
/// then the one MariaDB keeps for accounts with CONNECTION ADMIN (as the admin account, who
/// has it). The connections are held until the returned value is dropped.
fn exhaust_connections(lab: &Lab, host: &str) -> Vec<mysql::Conn> {
    let mut held = Vec::new();
    for (user, password_var) in [
        (lab.var("LAB_WRITER_USER"), "LAB_WRITER_PASSWORD_FILE"),
        (lab.var("LAB_ADMIN_USER"), "LAB_ADMIN_PASSWORD_FILE"),
    ] {
        loop {
            match mysql_conn(lab, host, user, password_var) {
                Ok(c) => held.push(c),
                Err(mysql::Error::MySqlError(e)) if e.code == TOO_MANY_CONNECTIONS => break,
                Err(e) => panic!("{user}@{host}: {e}"),
            }
            assert!(
                held.len() < 100,
                "{host} keeps accepting connections: max_connections did not take effect"
            );
        }
    }
    held
}

fn read_only(lab: &Lab, host: &str) -> String {
    lab.sql(host, "SELECT @@global.read_only")
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_primary_out_of_connections_is_alive_never_failed_over_nor_promoted_around
);
fn a_primary_out_of_connections_is_alive_never_failed_over_nor_promoted_around() {
    let lab = Lab::fresh();
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
    assert_eq!(inst.tick().code, 0, "{}", inst.run(&["report"]).stdout);
    let db1 = lab.var("LAB_DB1_IP");

    // 10 is MariaDB's smallest max_connections; the replica's binlog dump holds one.
    lab.sql("db1", "SET GLOBAL max_connections = 10");
    // The fault is real for both accounts deadpool uses, CONNECTION ADMIN or not. A session
    // that ends meanwhile (the first tick's, the replica's reconnect) frees a slot: take it
    // too, and ask again.
    let accounts = [
        (lab.var("LAB_MONITOR_USER"), "LAB_MONITOR_PASSWORD_FILE"),
        (lab.var("LAB_ADMIN_USER"), "LAB_ADMIN_PASSWORD_FILE"),
    ];
    let mut held = Vec::new();
    let exhaust = |held: &mut Vec<_>| {
        for attempt in 1..=5 {
            held.extend(exhaust_connections(&lab, db1));
            let refused = accounts.iter().all(|(user, password_var)| {
                login_error(&lab, db1, user, password_var) == Some(TOO_MANY_CONNECTIONS)
            });
            if refused {
                break;
            }
            assert!(
                attempt < 5,
                "both accounts must be refused for the test to mean anything"
            );
        }
    };
    exhaust(&mut held);

    // Twice the threshold of ticks, over longer than `down_for`: alive with a problem,
    // never counted down.
    for n in 1..=6 {
        let r = inst.tick();
        assert!(r.code == 0 || r.code == 1, "tick {n}: {r:?}");
        assert_eq!(
            inst.state_of("db"),
            ("armed".into(), "primary".into(), 0),
            "tick {n}: {}",
            inst.run(&["report"]).stdout
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = inst.run(&["report", "--nagios"]);
    assert!(r.code == 1 || r.code == 2, "{r:?}");
    assert!(r.stdout.contains("Too many connections"), "{r:?}");
    let full = inst.run(&["report"]).stdout;
    assert!(
        full.contains("alive but refused the login: Too many connections"),
        "{full}"
    );
    assert!(!inst.history().contains("failover_started"));

    // A person promotes the standby: the old primary answers (with an error), so it is not
    // promoted around; only `--force` would. The ticks took a few seconds, in which the
    // replica may have reconnected and freed a slot: the fault is made whole again first.
    exhaust(&mut held);
    let r = inst.run(&["promote", "db", "secondary", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("old primary 10.213.0.11 answers but refuses the admin account")
            && said.contains("Too many connections")
            && said.contains("promote --force"),
        "{said}"
    );
    assert_eq!(
        read_only(&lab, "db2"),
        "1",
        "the replica must stay read-only"
    );
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));

    drop(held);
    // The held sessions end asynchronously on the server; root needs a free slot too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while login_error(
        &lab,
        db1,
        lab.var("LAB_ADMIN_USER"),
        "LAB_ADMIN_PASSWORD_FILE",
    )
    .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "db1 did not free its connections"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.sql("db1", "SET GLOBAL max_connections = 151");
    assert_eq!(
        read_only(&lab, "db1"),
        "0",
        "the old primary was never touched"
    );
}

fn vip_on(lab: &Lab, host: &str) -> bool {
    lab.sh(&["vip", "show", host]).contains(VIP)
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_vip_release_refused_by_a_reachable_old_primary_is_not_taken_over
);
fn a_vip_release_refused_by_a_reachable_old_primary_is_not_taken_over() {
    let lab = Lab::fresh();
    lab.sh(&["vip", "add", "db1", &format!("{VIP}/24")]);
    // The steps log in as the unprivileged user, whose sudo (the README's rules) works on
    // db2 but wants a password on db1: db1 answers over SSH and refuses to release it.
    lab.install_readme_sudoers(common::BIN);
    lab.sh(&["sudo-password", "db1"]);
    let vip_step = format!(
        "\n[[protocol]]\ntype = \"vip\"\naddress = \"{VIP}/24\"\ninterface = \"eth0\"\ntimeout = \"10s\"\nssh = {{ user = \"{}\", sudo = true }}\n",
        lab.var("LAB_SSH_SUDO_USER")
    );
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool(3, &vip_step))],
    );
    inst.tick();
    assert_eq!(inst.state_of("db").0, "armed");

    lab.sh(&["kill", "db1", "mysql"]);
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    let history = inst.history();
    assert_eq!(inst.state_of("db").0, "failover_failed", "{history}");
    assert!(
        history.contains("10.213.0.100 NOT moved: old primary 10.213.0.11 answers but did not release the address")
            && history.contains("a password is required")
            && history.contains("nothing was added on 10.213.0.12"),
        "{history}"
    );
    assert!(
        !vip_on(&lab, "db2"),
        "the address must not be added next to a holder that answers"
    );
    assert!(vip_on(&lab, "db1"), "the address stays where it was");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_manual_promote_to_a_lagging_replica_on_binlog_positions_loses_no_acknowledged_row
);
fn a_manual_promote_to_a_lagging_replica_on_binlog_positions_loses_no_acknowledged_row() {
    let lab = Lab::fresh();
    lab.sh(&["replica-filepos"]);
    lab.sql("db1", "CREATE TABLE app.acked (id INT PRIMARY KEY)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.sql("db2", "SHOW TABLES IN app LIKE 'acked'").is_empty() {
        assert!(Instant::now() < deadline, "the table never reached db2");
        std::thread::sleep(Duration::from_millis(100));
    }
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
    assert_eq!(inst.tick().code, 0, "{}", inst.run(&["report"]).stdout);

    std::thread::scope(|s| {
        // The replica receives but applies nothing for a few seconds: a session holds a
        // read lock on the table (its SQL thread still counts as running).
        let lock =
            s.spawn(|| lab_sh(&["sql", "db2", "LOCK TABLES app.acked READ; SELECT SLEEP(5)"]));
        let deadline = Instant::now() + Duration::from_secs(5);
        while lab.sql(
            "db2",
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(5)'",
        ) != "1"
        {
            assert!(Instant::now() < deadline, "the lock on db2 was not taken");
            std::thread::sleep(Duration::from_millis(50));
        }
        let writer = Writer::start(&lab, lab.var("LAB_DB1_IP"));
        std::thread::sleep(Duration::from_millis(1000));
        let acked_so_far = writer.acked_so_far();
        let applied: usize = lab
            .sql("db2", "SELECT COUNT(*) FROM app.acked")
            .parse()
            .unwrap();
        assert!(
            applied < acked_so_far,
            "the replica must lag for the test to mean anything: {applied} of {acked_so_far} applied"
        );

        // An idle session of the application: the fence must end it too.
        let mut idle = mysql_conn(
            &lab,
            lab.var("LAB_DB1_IP"),
            lab.var("LAB_WRITER_USER"),
            "LAB_WRITER_PASSWORD_FILE",
        )
        .expect("an idle session");

        // The writer is still writing while the promote fences db1 and waits.
        let r = inst.run(&["promote", "db", "secondary", "--yes"]);
        let (acked, why) = writer.finish();
        lock.join().unwrap();
        assert_eq!(r.code, 0, "{r:?}\n{}", inst.history());
        assert_ne!(why, "stopped", "the fence must have stopped the writer");
        lab.assert_rows_on("db2", &acked);
        assert!(
            idle.query_drop("SELECT 1").is_err(),
            "the idle session on the old primary must have been ended"
        );
    });

    assert_eq!(read_only(&lab, "db2"), "0", "the new primary is writable");
    assert_eq!(
        read_only(&lab, "db1"),
        "1",
        "the old primary stays read-only"
    );
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    let history = inst.history();
    assert!(
        history.contains("waiting for 10.213.0.12 to apply 10.213.0.11's binlog mysql-bin."),
        "the wait is by file and position: {history}"
    );
    assert!(
        history.contains("has applied everything 10.213.0.11 wrote"),
        "{history}"
    );
    assert!(
        history.contains("client session(s) on 10.213.0.11: ") && history.contains(" writer@"),
        "the ended sessions are recorded: {history}"
    );
}
