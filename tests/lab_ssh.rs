//! Remote steps over real sshd in the namespace lab: the whole chain (mysql_promote,
//! etc_hosts, vip, exec), blocked and failed chains, the second opinion, host keys, and
//! readiness problems. Run by `scripts/test` (they need root); `cargo test` lists them as
//! ignored.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::Instance;
use common::lab::{Lab, VIP};

/// The chain of the issue: promote the replica, repoint the apps, move the VIP, restart.
fn full_chain(lab: &Lab, max_failed_checks: u32, before_hosts: &str, helper: &str) -> String {
    let extra = format!(
        r#"{before_hosts}{hosts}{vip}
[[protocol]]
type = "exec"
name = "restart app"
hosts = ["{app1}", "{app2}"]
test_command = "test -d {lab_dir}"
exec_command = "echo \"$(hostname) restarted for {{new_primary}}\" >> {lab_dir}/restarts"
timeout = "10s"
"#,
        hosts = lab.etc_hosts_step(helper, ""),
        vip = lab.vip_step(""),
        app1 = lab.var("LAB_APP1_IP"),
        app2 = lab.var("LAB_APP2_IP"),
        lab_dir = lab.var("LAB_DIR"),
    );
    lab.mysql_pool(max_failed_checks, &extra)
}

fn setup(known_hosts: Option<&str>, before_hosts: &str, helper: &str) -> (Lab, Instance) {
    let lab = Lab::fresh();
    lab.sh(&["vip", "add", "db1", &format!("{VIP}/24")]);
    lab.map_on_apps("db.service");
    let inst = Instance::with(
        &lab.settings_with_ssh(known_hosts),
        &[("db", &full_chain(&lab, 3, before_hosts, helper))],
    );
    (lab, inst)
}

fn vip_on(lab: &Lab, host: &str) -> bool {
    lab.sh(&["vip", "show", host]).contains(VIP)
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    kill_9_runs_the_whole_chain_and_the_apps_follow
);
fn kill_9_runs_the_whole_chain_and_the_apps_follow() {
    let (lab, inst) = setup(None, "", common::BIN);
    assert_eq!(inst.tick().code, 0);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 0, "{}", inst.run(&["report"]).stdout);

    lab.sh(&["kill", "db1", "mysql"]);
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    for ns in ["LAB_APP1_NS", "LAB_APP2_NS"] {
        assert_eq!(
            lab.app_maps(ns, "db.service").as_deref(),
            Some(lab.var("LAB_DB2_IP")),
            "{ns}"
        );
    }
    assert!(vip_on(&lab, "db2") && !vip_on(&lab, "db1"));
    // From inside app1, the VIP answers from db2 (server_id 2).
    let (ok, server_id) = lab.in_ns(
        "LAB_APP1_NS",
        &format!(
            "MYSQL_PWD=$(cat {}) mariadb --connect-timeout=3 -h {VIP} -u writer -N -e 'SELECT @@server_id'",
            lab.var("LAB_WRITER_PASSWORD_FILE")
        ),
    );
    assert!(ok && server_id == "2", "{server_id}");
    let restarts = std::fs::read_to_string(format!("{}/restarts", lab.var("LAB_DIR"))).unwrap();
    assert!(
        restarts.contains("app1 restarted for 10.213.0.12")
            && restarts.contains("app2 restarted for 10.213.0.12"),
        "{restarts}"
    );

    inst.tick();
    let full = inst.run(&["report", "--full"]).stdout;
    for needed in [
        "1. promote replica (mysql_promote)",
        "2. etc_hosts (etc_hosts)",
        "3. vip (vip)",
        "4. restart app (exec)",
        "10.213.0.21",
        "10.213.0.22",
        "db.service -> 10.213.0.12 (active)",
    ] {
        assert!(full.contains(needed), "`{needed}` missing from:\n{full}");
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_client_unreachable_at_preflight_blocks_with_nothing_changed
);
fn a_client_unreachable_at_preflight_blocks_with_nothing_changed() {
    let (lab, inst) = setup(None, "", common::BIN);
    inst.tick();
    lab.sh(&["hang", "app2"]);
    lab.sh(&["kill", "db1", "mysql"]);
    for _ in 0..3 {
        let started = Instant::now();
        inst.tick();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a tick must stay bounded"
        );
    }
    assert_eq!(inst.state_of("db").0, "blocked");
    let reason = inst.pool_json("db")["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("10.213.0.22") && reason.contains("unreachable"),
        "{reason}"
    );
    assert_eq!(
        lab.sql("db2", "SELECT @@global.read_only"),
        "1",
        "the replica was not promoted"
    );
    assert_eq!(
        lab.app_maps("LAB_APP1_NS", "db.service").as_deref(),
        Some(lab.var("LAB_DB1_IP"))
    );
    assert!(vip_on(&lab, "db1") && !vip_on(&lab, "db2"));
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_client_failing_between_preflight_and_action_leaves_failover_failed_naming_it
);
fn a_client_failing_between_preflight_and_action_leaves_failover_failed_naming_it() {
    // A local step between the promotion and the hosts switch cuts app2 off: the preflight
    // saw it healthy, the action does not reach it.
    let cut = format!(
        "\n[[protocol]]\ntype = \"exec\"\nname = \"cut app2 off\"\nhosts = [\"local\"]\nexec_command = \"bash {} hang app2\"\n",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/lab/lab.sh")
            .display()
    );
    let (lab, inst) = setup(None, &cut, common::BIN);
    inst.tick();
    lab.sh(&["kill", "db1", "mysql"]);
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(
        inst.state_of("db").0,
        "failover_failed",
        "{}",
        inst.history()
    );
    let reason = inst.pool_json("db")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("etc_hosts"), "{reason}");
    let history = inst.history();
    assert!(
        history.contains("[etc_hosts @ 10.213.0.22] switch failed"),
        "{history}"
    );
    assert_eq!(
        lab.app_maps("LAB_APP1_NS", "db.service").as_deref(),
        Some(lab.var("LAB_DB2_IP"))
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_primary_cut_off_from_deadpool_only_is_not_failed_over
);
fn a_primary_cut_off_from_deadpool_only_is_not_failed_over() {
    let lab = Lab::fresh();
    let pool = lab.mysql_pool_confirmed_by_apps(3);
    let inst = Instance::with(&lab.settings_with_ssh(None), &[("db", &pool)]);
    inst.tick();
    // Drop only the deadpool host's traffic inside db1: the app hosts still reach it.
    lab.sh(&["cutoff", "db1", lab.var("LAB_BRIDGE_IP")]);
    for _ in 0..4 {
        inst.tick();
    }
    assert_eq!(inst.state_of("db").0, "blocked");
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("10.213.0.21 reaches 10.213.0.11:3306")
            && r.stdout.contains("10.213.0.22 reaches 10.213.0.11:3306"),
        "{r:?}"
    );
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "1");

    // A real death (observers cannot reach it either) fails over, with the votes recorded.
    lab.sh(&["kill", "db1", "mysql"]);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    assert!(
        inst.history()
            .contains("10.213.0.21 cannot reach 10.213.0.11:3306"),
        "{}",
        inst.history()
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    unknown_and_changed_host_keys_are_refused
);
fn unknown_and_changed_host_keys_are_refused() {
    let lab = Lab::fresh();
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    // app1's address with app2's key: what a changed key looks like.
    let known = std::fs::read_to_string(lab.var("LAB_SSH_KNOWN_HOSTS")).unwrap();
    let app2_key = known
        .lines()
        .find(|l| l.starts_with("10.213.0.22"))
        .unwrap()
        .split_once(' ')
        .unwrap()
        .1
        .to_string();
    let swapped = tmp.path().join("swapped_known_hosts");
    std::fs::write(&swapped, format!("10.213.0.21 {app2_key}\n")).unwrap();
    let exec = format!(
        "\n[[protocol]]\ntype = \"exec\"\nhosts = [\"{}\"]\ntest_command = \"true\"\nexec_command = \"true\"\n",
        lab.var("LAB_APP1_IP")
    );
    for (file, words) in [
        (
            &empty,
            vec![
                "unknown host key ssh-ed25519 SHA256:",
                "ssh-keyscan -p 22 -t ed25519 10.213.0.21 >>",
            ],
        ),
        (
            &swapped,
            vec!["HOST KEY CHANGED", "ssh-keygen -R 10.213.0.21"],
        ),
    ] {
        let inst = Instance::with(
            &lab.settings_with_ssh(Some(file.to_str().unwrap())),
            &[("db", &lab.mysql_pool(3, &exec))],
        );
        inst.tick();
        let r = inst.run(&["report", "--nagios"]);
        assert_eq!(r.code, 2, "{r:?}");
        for w in &words {
            assert!(r.stdout.contains(w), "`{w}` missing: {r:?}");
        }
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    readiness_problems_of_clients_and_the_vip_reach_nagios
);
fn readiness_problems_of_clients_and_the_vip_reach_nagios() {
    let (lab, inst) = setup(None, "", common::BIN);
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );
    let nagios = |inst: &Instance| {
        std::thread::sleep(Duration::from_millis(1100));
        inst.tick();
        inst.run(&["report", "--nagios"])
    };

    // A client pointing at the standby: CRITICAL.
    let app2_hosts = format!("/etc/netns/{}/hosts", lab.var("LAB_APP2_NS"));
    let original = std::fs::read_to_string(&app2_hosts).unwrap();
    let repointed = original.replace("10.213.0.11\tdb.service", "10.213.0.12\tdb.service");
    write_in_place(&app2_hosts, &repointed);
    let r = nagios(&inst);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout
            .contains("10.213.0.22: db.service points at the standby 10.213.0.12"),
        "{r:?}"
    );
    write_in_place(&app2_hosts, &original);

    // An unwritable hosts file: WARNING.
    let _guard = Immutable::set(&app2_hosts);
    let r = nagios(&inst);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("10.213.0.22: db.service -> 10.213.0.11 (active); file not writable"),
        "{r:?}"
    );
    drop(_guard);

    // The VIP on both servers: CRITICAL.
    lab.sh(&["vip", "add", "db2", &format!("{VIP}/24")]);
    let r = nagios(&inst);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("10.213.0.100 is on BOTH servers"),
        "{r:?}"
    );
    lab.sh(&["vip", "del", "db2", &format!("{VIP}/24")]);
    assert_eq!(nagios(&inst).code, 0);

    // A missing helper on the clients: WARNING for each.
    let pool = full_chain(&lab, 3, "", "/nonexistent/deadpool");
    inst.write_pool("db", &pool);
    let r = nagios(&inst);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("10.213.0.21: helper `/nonexistent/deadpool` is missing"),
        "{r:?}"
    );
}

fn write_in_place(path: &str, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// `chattr +i` for the life of the guard: even root cannot write the file.
struct Immutable(String);

impl Immutable {
    fn set(path: &str) -> Immutable {
        assert!(
            std::process::Command::new("chattr")
                .args(["+i", path])
                .status()
                .unwrap()
                .success()
        );
        Immutable(path.to_string())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-i", &self.0])
            .status();
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    an_unprivileged_login_needs_sudo_and_gets_it
);
fn an_unprivileged_login_needs_sudo_and_gets_it() {
    let lab = Lab::fresh();
    lab.map_on_apps("db.service");
    let step = |sudo: bool| {
        format!(
            "\n[[protocol]]\ntype = \"etc_hosts\"\nservice_host_name = \"db.service\"\nclient_hosts = [\"{}\"]\nhelper = \"{}\"\nssh = {{ user = \"{}\", sudo = {sudo} }}\n",
            lab.var("LAB_APP1_IP"),
            common::BIN,
            lab.var("LAB_SSH_SUDO_USER"),
        )
    };
    // Without sudo the unprivileged user cannot write /etc/hosts: readiness says so.
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool(3, &step(false)))],
    );
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("file not writable") && r.stdout.contains("not writable by dpapp"),
        "{r:?}"
    );

    // With sudo = true and the README's sudoers rules, the same user switches the file.
    lab.install_readme_sudoers(common::BIN);
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool(1, &step(true)))],
    );
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );
    lab.sh(&["kill", "db1", "mysql"]);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    assert_eq!(
        lab.app_maps("LAB_APP1_NS", "db.service").as_deref(),
        Some(lab.var("LAB_DB2_IP"))
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    password_logins_work_and_a_wrong_password_is_refused
);
fn password_logins_work_and_a_wrong_password_is_refused() {
    let lab = Lab::fresh();
    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let step = |password_file: &str| {
        format!(
            "\n[[protocol]]\ntype = \"exec\"\nhosts = [\"{}\"]\ntest_command = \"id -un\"\nexec_command = \"true\"\nssh = {{ user = \"{}\", password_file = \"{password_file}\" }}\n",
            lab.var("LAB_APP1_IP"),
            lab.var("LAB_SSH_SUDO_USER"),
        )
    };
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[(
            "db",
            &lab.mysql_pool(3, &step(lab.var("LAB_SSH_SUDO_USER_PASSWORD_FILE"))),
        )],
    );
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[(
            "db",
            &lab.mysql_pool(3, &step(&wrong.display().to_string())),
        )],
    );
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("login as dpapp with the password in") && r.stdout.contains("failed"),
        "{r:?}"
    );
}
