//! Secrets never leak: with known passwords for the MySQL monitor and admin accounts and
//! for Redis, every command runs (failover and manual promote included, at debug log
//! level); stdout, stderr, the history, the database files and every process's argument
//! list while they run are searched for the passwords. Run by `scripts/test`.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Instance;
use common::lab::Lab;

/// Every process's argument list, sampled until `stop`.
fn watch_argv(stop: Arc<AtomicBool>, seen: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(dir) = std::fs::read_dir("/proc") {
                for entry in dir.flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if text.contains("deadpool")
                            || text.contains("mariadb")
                            || text.contains("redis")
                            || text.contains("sh -c")
                        {
                            seen.lock().unwrap().push(text);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    })
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    no_secret_appears_anywhere
);
fn no_secret_appears_anywhere() {
    let lab = Lab::fresh();
    let secrets = lab_passwords(&lab);
    // A wrong password too: error paths must not echo what was tried.
    let wrong = "Wr0ngButSecretPassw0rd";
    let tmp = tempfile::tempdir().unwrap();
    let bad_pool = wrong_password_pool(&lab, wrong, tmp.path());

    // An SSH step that logs in with a password.
    let ssh_step = format!(
        "\n[[protocol]]\ntype = \"exec\"\nhosts = [\"{}\"]\ntest_command = \"true\"\nexec_command = \"true\"\nssh = {{ user = \"{}\", password_file = \"{}\" }}\n",
        lab.var("LAB_APP1_IP"),
        lab.var("LAB_SSH_SUDO_USER"),
        lab.var("LAB_SSH_SUDO_USER_PASSWORD_FILE"),
    );
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[
            ("orders", &lab.mysql_pool(2, &ssh_step)),
            ("cache", &lab.redis_pool(2)),
            ("wrongpw", &bad_pool),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let argv = Arc::new(Mutex::new(Vec::new()));
    let watcher = watch_argv(stop.clone(), argv.clone());

    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let mut full = vec!["-vv"];
        full.extend_from_slice(args);
        let r = inst.run(&full);
        outputs.push(format!("{args:?}\n{}\n{}", r.stdout, r.stderr));
    };
    run(&["check-config"]);
    run(&["tick"]);
    run(&["tick", "--dry-run"]);
    run(&["promote", "cache", "secondary", "--dry-run"]);
    run(&["promote", "cache", "secondary", "--yes"]);
    lab.sh(&["kill", "db1", "mysql"]);
    for _ in 0..3 {
        run(&["tick"]);
    }
    run(&["reset", "orders", "--yes", "--force"]);
    run(&["report"]);
    run(&["report", "--nagios"]);
    run(&["report", "--json"]);
    run(&["history", "--limit", "10000"]);
    run(&["history", "--json", "--limit", "10000"]);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    assert!(
        inst.history().contains("failed_over"),
        "the scenario should include failovers: {}",
        inst.history()
    );
    let places = places_to_search(&inst, outputs, &argv.lock().unwrap());
    for secret in secrets.iter().map(String::as_str).chain([wrong]) {
        for (place, text) in &places {
            assert!(!text.contains(secret), "a password appears in {place}");
        }
    }
}

/// The lab's passwords, each a long random string.
fn lab_passwords(lab: &Lab) -> Vec<String> {
    let secrets: Vec<String> = [
        "LAB_MONITOR_PASSWORD_FILE",
        "LAB_ADMIN_PASSWORD_FILE",
        "LAB_REDIS_PASSWORD_FILE",
        "LAB_SSH_SUDO_USER_PASSWORD_FILE",
    ]
    .iter()
    .map(|k| lab.secret(k))
    .collect();
    assert!(
        secrets.iter().all(|s| s.len() >= 12),
        "the lab's passwords should be long random strings"
    );
    secrets
}

/// A MySQL pool whose monitor logs in with `wrong`, from a private file in `dir`.
fn wrong_password_pool(lab: &Lab, wrong: &str, dir: &std::path::Path) -> String {
    let wrong_file = dir.join("wrong");
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    std::fs::set_permissions(
        &wrong_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    lab.mysql_pool(3, "").replacen(
        lab.var("LAB_MONITOR_PASSWORD_FILE"),
        &wrong_file.display().to_string(),
        1,
    )
}

/// Every place a password must not appear: the commands' outputs, the database files, and
/// the argument lists of the processes the watcher sampled.
fn places_to_search(
    inst: &Instance,
    outputs: Vec<String>,
    sampled: &[String],
) -> Vec<(String, String)> {
    let mut places: Vec<(String, String)> = outputs
        .into_iter()
        .map(|o| ("command output".to_string(), o))
        .collect();
    for file in [
        "state/deadpool.db",
        "state/deadpool.db-wal",
        "state/deadpool.db-shm",
    ] {
        if let Ok(bytes) = std::fs::read(inst.path(file)) {
            places.push((
                file.to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    assert!(
        sampled.iter().any(|a| a.contains("deadpool")),
        "the argv watcher saw no deadpool process"
    );
    places.push(("process argument lists".to_string(), sampled.join("\n")));
    places
}
