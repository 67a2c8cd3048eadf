//! The namespace lab (tests/lab/lab.sh) seen from a test: real MariaDB servers, real sshd,
//! real network faults. Lab tests are `#[ignore]`d so that a plain `cargo test` lists them as
//! not run; `scripts/test` runs them with `--ignored`, one at a time, as root. A lab that
//! cannot start fails the test loudly.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug)]
pub struct Lab {
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

/// Runs `lab.sh ARGS` and returns stdout; panics with everything it said on failure.
pub fn lab_sh(args: &[&str]) -> String {
    lab_sh_with(args, &[])
}

/// [`lab_sh`] with these variables in lab.sh's environment.
fn lab_sh_with(args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .expect("run lab.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "lab.sh {} failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

impl Lab {
    /// A freshly built lab: whatever an earlier test did to it is gone. db2 is db1's one
    /// standby.
    pub fn fresh() -> Lab {
        Lab::fresh_with_standbys(1)
    }

    /// [`Lab::fresh`] with `standbys` standbys of db1: 1 (db2) or 2 (db2 and db3, a second
    /// replica configured like db2, on [`Lab::db3_ip`]).
    pub fn fresh_with_standbys(standbys: u32) -> Lab {
        assert!(
            (1..=2).contains(&standbys),
            "the lab has one or two standbys"
        );
        lab_sh(&["down"]);
        lab_sh_with(&["up"], &[("LAB_STANDBYS", &standbys.to_string())]);
        let mut env = HashMap::new();
        for line in lab_sh(&["env"]).lines() {
            if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                env.insert(
                    k.to_string(),
                    v.trim_matches('\'').trim_matches('"').to_string(),
                );
            }
        }
        Lab { env }
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("lab.sh env has no {key}"))
    }

    pub fn sh(&self, args: &[&str]) -> String {
        lab_sh(args)
    }

    /// SQL as root over the unix socket (works even while the network is cut).
    pub fn sql(&self, host: &str, sql: &str) -> String {
        lab_sh(&["sql", host, sql]).trim().to_string()
    }

    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.var(name))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Instance settings whose `[ssh]` logs in to the lab's hosts as root with the lab key.
    pub fn settings_with_ssh(&self, known_hosts: Option<&str>) -> String {
        format!(
            "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n\n[ssh]\nuser = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nconnect_timeout = \"2s\"\n",
            self.var("LAB_SSH_USER"),
            self.var("LAB_SSH_KEY"),
            known_hosts.unwrap_or(self.var("LAB_SSH_KNOWN_HOSTS"))
        )
    }

    /// Adds `name -> db1` to both app hosts' own hosts files (in place, as the lab wants).
    pub fn map_on_apps(&self, name: &str) {
        for ns in [self.var("LAB_APP1_NS"), self.var("LAB_APP2_NS")] {
            let path = format!("/etc/netns/{ns}/hosts");
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str(&format!("{}\t{name}\n", self.var("LAB_DB1_IP")));
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
    }

    /// What `name` maps to in an app host's own hosts file.
    pub fn app_maps(&self, ns_var: &str, name: &str) -> Option<String> {
        let text =
            std::fs::read_to_string(format!("/etc/netns/{}/hosts", self.var(ns_var))).unwrap();
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find(|l| l.split_whitespace().skip(1).any(|n| n == name))
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
    }

    /// Runs a command inside a lab host's namespace (with its own /etc/hosts).
    pub fn in_ns(&self, ns_var: &str, script: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.var(ns_var), "bash", "-c", script])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    /// A Redis pool over db1 (primary) and db2 (replica) with a `redis_promote` step.
    pub fn redis_pool(&self, max_failed_checks: u32) -> String {
        self.redis_pool_over(&self.pair(), max_failed_checks, "", "")
    }

    /// [`Lab::redis_pool`] over db1 (primary) and the standbys db2 and db3 (needs
    /// [`Lab::fresh_with_standbys`]`(2)`), with `extra_keys` among the pool's own keys
    /// (`never_promote = [..]`, `max_promote_lag = ".."`...) and `extra_steps` after the
    /// `redis_promote` step.
    pub fn redis_pool3(
        &self,
        max_failed_checks: u32,
        extra_keys: &str,
        extra_steps: &str,
    ) -> String {
        self.redis_pool_over(&self.trio(), max_failed_checks, extra_keys, extra_steps)
    }

    fn redis_pool_over(
        &self,
        servers: &str,
        max_failed_checks: u32,
        extra_keys: &str,
        extra_steps: &str,
    ) -> String {
        format!(
            "{servers}max_failed_checks = {max_failed_checks}\n{keys}\n[monitor]\ntype = \"redis\"\npassword_file = \"{}\"\ntimeout = \"1s\"\n\n[[protocol]]\ntype = \"redis_promote\"\ncatch_up_timeout = \"5s\"\ntimeout = \"15s\"\n{extra_steps}",
            self.var("LAB_REDIS_PASSWORD_FILE"),
            keys = key_lines(extra_keys),
        )
    }

    /// A MySQL pool over db1 (primary) and db2 (replica) with a `mysql_promote` step.
    pub fn mysql_pool(&self, max_failed_checks: u32, extra_steps: &str) -> String {
        self.mysql_pool_over(&self.pair(), max_failed_checks, "", extra_steps)
    }

    /// [`Lab::mysql_pool`] over db1 (primary) and the standbys db2 and db3 (needs
    /// [`Lab::fresh_with_standbys`]`(2)`), with `extra_keys` among the pool's own keys
    /// (`never_promote = [..]`, `max_promote_lag = ".."`, `confirm_from_replicas = true`)
    /// and `extra_steps` after the `mysql_promote` step.
    pub fn mysql_pool3(
        &self,
        max_failed_checks: u32,
        extra_keys: &str,
        extra_steps: &str,
    ) -> String {
        self.mysql_pool_over(&self.trio(), max_failed_checks, extra_keys, extra_steps)
    }

    fn mysql_pool_over(
        &self,
        servers: &str,
        max_failed_checks: u32,
        extra_keys: &str,
        extra_steps: &str,
    ) -> String {
        format!(
            r#"{servers}max_failed_checks = {max_failed_checks}
{keys}
[monitor]
type = "mysql"
user = "{mon}"
password_file = "{mon_pw}"
timeout = "1s"

[[protocol]]
type = "mysql_promote"
name = "promote replica"
user = "{admin}"
password_file = "{admin_pw}"
catch_up_timeout = "10s"
max_lag = "5s"
timeout = "20s"
{extra_steps}"#,
            keys = key_lines(extra_keys),
            mon = self.var("LAB_MONITOR_USER"),
            mon_pw = self.var("LAB_MONITOR_PASSWORD_FILE"),
            admin = self.var("LAB_ADMIN_USER"),
            admin_pw = self.var("LAB_ADMIN_PASSWORD_FILE"),
        )
    }

    /// A pool's server lines for db1 and db2.
    fn pair(&self) -> String {
        format!(
            "primary = \"{}\"\nsecondary = \"{}\"\n",
            self.var("LAB_DB1_IP"),
            self.var("LAB_DB2_IP")
        )
    }

    /// A pool's server lines for db1 and its two standbys.
    fn trio(&self) -> String {
        format!(
            "primary = \"{}\"\nstandbys = [\"{}\", \"{}\"]\n",
            self.var("LAB_DB1_IP"),
            self.var("LAB_DB2_IP"),
            self.db3_ip()
        )
    }

    /// db3's address, in a lab built by [`Lab::fresh_with_standbys`]`(2)`.
    pub fn db3_ip(&self) -> &str {
        self.env.get("LAB_DB3_IP").map_or_else(
            || panic!("this lab has no db3: build it with Lab::fresh_with_standbys(2)"),
            String::as_str,
        )
    }

    /// [`Lab::mysql_pool`] with no extra steps whose monitor asks both app hosts to confirm
    /// an outage (`confirm_from`).
    pub fn mysql_pool_confirmed_by_apps(&self, max_failed_checks: u32) -> String {
        self.mysql_pool(max_failed_checks, "").replacen(
            "timeout = \"1s\"\n",
            &format!(
                "timeout = \"1s\"\nconfirm_from = [\"{}\", \"{}\"]\n",
                self.var("LAB_APP1_IP"),
                self.var("LAB_APP2_IP")
            ),
            1,
        )
    }
}

impl Lab {
    /// Installs the README's sudoers rules, exactly as written there, for the lab's
    /// unprivileged user, with the README's example values replaced by the lab's own: the
    /// proof that those lines are all a failover needs.
    pub fn install_readme_sudoers(&self, helper: &str) -> String {
        let readme =
            std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        let block = readme
            .split("```")
            .find(|b| b.contains("/etc/sudoers.d/deadpool on an app server"))
            .expect("README has the sudoers block");
        let restart = format!("/usr/bin/touch {}/restarted", self.var("LAB_DIR"));
        let rules = block
            .trim_start_matches(|c: char| c != '\n')
            .replace(
                "deadpool ALL=(root)",
                &format!("{} ALL=(root)", self.var("LAB_SSH_SUDO_USER")),
            )
            .replace("/usr/bin/deadpool ", &format!("{helper} "))
            .replace("db.internal", "db.service")
            .replace("10.0.0.100", "10.213.0.100")
            .replace("10.0.0.11", self.var("LAB_DB1_IP"))
            .replace("10.0.0.12", self.var("LAB_DB2_IP"))
            .replace("/usr/bin/systemctl restart myapp", &restart);
        let file = format!("{}/sudoers-from-readme", self.var("LAB_DIR"));
        std::fs::write(&file, &rules).unwrap();
        lab_sh(&["sudoers", &file]);
        rules
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Leave nothing behind, even after a failed assertion.
        let _ = Command::new("bash").arg(script()).arg("down").output();
    }
}

/// Extra pool keys as whole lines: nothing, or the keys ending in a newline.
fn key_lines(keys: &str) -> String {
    if keys.is_empty() || keys.ends_with('\n') {
        keys.to_string()
    } else {
        format!("{keys}\n")
    }
}

/// A MySQL connection to a lab server over TCP as `user` (password read from the file that
/// `password_var` names), with the lab's short timeouts and no default database.
pub fn mysql_conn(
    lab: &Lab,
    host: &str,
    user: &str,
    password_var: &str,
) -> Result<mysql::Conn, mysql::Error> {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(3306)
        .user(Some(user))
        .pass(Some(lab.secret(password_var)))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(std::time::Duration::from_secs(2)))
        .read_timeout(Some(std::time::Duration::from_secs(5)))
        .write_timeout(Some(std::time::Duration::from_secs(5)));
    mysql::Conn::new(opts)
}

/// An application that keeps inserting rows into `app.acked` on one server, as the lab's
/// `writer` account, and remembers which inserts were acknowledged. It stops at its first
/// error (the server went away, became read-only, or ended the session).
#[derive(Debug)]
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Writer {
    pub fn start(lab: &Lab, host: &str) -> Writer {
        use mysql::prelude::Queryable;
        use std::sync::atomic::Ordering;
        let mut conn = mysql_conn(
            lab,
            host,
            lab.var("LAB_WRITER_USER"),
            "LAB_WRITER_PASSWORD_FILE",
        )
        .expect("the writer connects");
        conn.query_drop("CREATE TABLE IF NOT EXISTS app.acked (id INT PRIMARY KEY)")
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut id = 0u32;
            while !s.load(Ordering::Relaxed) {
                id += 1;
                match conn.exec_drop("INSERT INTO app.acked (id) VALUES (?)", (id,)) {
                    Ok(()) => a.lock().unwrap().push(id),
                    Err(e) => return e.to_string(),
                }
            }
            "stopped".to_string()
        });
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// How many inserts were acknowledged so far.
    pub fn acked_so_far(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the writer; returns the acknowledged ids and why it ended (`stopped` when it
    /// was still writing).
    pub fn finish(mut self) -> (Vec<u32>, String) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let why = self.thread.take().unwrap().join().unwrap();
        let ids = self.acked.lock().unwrap().clone();
        (ids, why)
    }
}

impl Lab {
    /// Asserts that every acknowledged id is in `app.acked` on `host`.
    pub fn assert_rows_on(&self, host: &str, acked: &[u32]) {
        assert!(
            acked.len() > 10,
            "the writer wrote too little to mean anything: {}",
            acked.len()
        );
        let have: std::collections::HashSet<u32> = self
            .sql(host, "SELECT id FROM app.acked")
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        let lost: Vec<&u32> = acked.iter().filter(|id| !have.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged rows missing on {host}, the first: {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
    }
}

/// The lab's virtual address (`lab.sh vip add db1 VIP/24` puts it on the primary).
pub const VIP: &str = "10.213.0.100";

impl Lab {
    /// An `etc_hosts` step that points `db.service` on both app servers at the new primary,
    /// through `helper`, followed by `extra` lines of the step (an `ssh = {..}` override).
    pub fn etc_hosts_step(&self, helper: &str, extra: &str) -> String {
        format!(
            "\n[[protocol]]\ntype = \"etc_hosts\"\nservice_host_name = \"db.service\"\nclient_hosts = [\"{}\", \"{}\"]\nhelper = \"{helper}\"\ntimeout = \"10s\"\n{extra}\n",
            self.var("LAB_APP1_IP"),
            self.var("LAB_APP2_IP"),
        )
    }

    /// A `vip` step that moves [`VIP`] on `eth0`, followed by `extra` lines of the step.
    pub fn vip_step(&self, extra: &str) -> String {
        format!(
            "\n[[protocol]]\ntype = \"vip\"\naddress = \"{VIP}/24\"\ninterface = \"eth0\"\ntimeout = \"10s\"\n{extra}\n"
        )
    }
}

/// What `SHOW SLAVE STATUS` says of one server (empty strings on a primary), MariaDB's
/// column names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub master_host: String,
    pub slave_io_running: String,
    pub slave_sql_running: String,
    pub gtid_io_pos: String,
    /// 0 when the IO thread had no error; 4151 when its source refuses a locked account.
    pub last_io_errno: u32,
}

impl Lab {
    /// The replication state of a database host, from one `SHOW SLAVE STATUS`.
    pub fn replica_status(&self, host: &str) -> ReplicaStatus {
        let out = lab_sh(&[
            "replica-field",
            host,
            "Master_Host",
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Gtid_IO_Pos",
            "Last_IO_Errno",
        ]);
        let mut lines = out.lines().map(|l| l.trim().to_string());
        let mut next = || {
            lines
                .next()
                .unwrap_or_else(|| panic!("replica-field {host} said too little: {out:?}"))
        };
        ReplicaStatus {
            master_host: next(),
            slave_io_running: next(),
            slave_sql_running: next(),
            gtid_io_pos: next(),
            last_io_errno: next().parse().unwrap_or(0),
        }
    }

    /// `STOP SLAVE IO_THREAD` on a standby, once it has stopped: it receives nothing more
    /// while its SQL thread runs on (a check of the SQL thread alone still passes).
    pub fn stop_replica_io(&self, host: &str) {
        lab_sh(&["replica-io", "stop", host]);
    }

    /// `START SLAVE IO_THREAD` on a standby, once the thread runs again.
    pub fn start_replica_io(&self, host: &str) {
        lab_sh(&["replica-io", "start", host]);
    }

    /// Locks the replication account on `host` alone (not binlogged, so no other server
    /// sees it): a replica repointed to `host` is then refused (errno 4151) and keeps
    /// retrying, while `host` and every other server go on replicating. The way to make
    /// one standby's repoint fail without breaking its current replication.
    pub fn lock_replication_account(&self, host: &str) {
        lab_sh(&["repl-lock", host]);
    }

    /// Undoes [`Lab::lock_replication_account`].
    pub fn unlock_replication_account(&self, host: &str) {
        lab_sh(&["repl-unlock", host]);
    }

    /// `host` replicates from `source` from now on (same account, GTID `slave_pos`);
    /// returns at once: read [`Lab::replica_status`] for the outcome.
    pub fn repoint(&self, host: &str, source: &str) {
        lab_sh(&["repoint", host, source]);
    }

    /// `INFO replication` of a host's Redis, as its `key:value` lines.
    pub fn redis_replication(&self, host: &str) -> HashMap<String, String> {
        lab_sh(&["redis", host, "INFO", "replication"])
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Runs `command` on `host_ip` over ssh as the lab's step user, with the lab's key and
    /// its known_hosts only (an unknown or changed host key fails): (success, stdout).
    pub fn ssh(&self, host_ip: &str, command: &str) -> (bool, String) {
        let out = Command::new("timeout")
            .arg("15")
            .arg("ssh")
            .args(["-i", self.var("LAB_SSH_KEY"), "-F", "/dev/null"])
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.var("LAB_SSH_KNOWN_HOSTS")
            ))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=3"])
            .arg(format!("{}@{host_ip}", self.var("LAB_SSH_USER")))
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }
}

/// Polls `ok` every 100 ms until it holds; panics naming `what` after `limit`. Returns how
/// long it took.
pub fn wait(
    limit: std::time::Duration,
    what: &str,
    mut ok: impl FnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    start.elapsed()
}

// ------------------------------------------------------------ PostgreSQL (`lab.sh pg-up`)

impl Lab {
    /// [`Lab::fresh_with_standbys`] with PostgreSQL 15 on the database hosts as well: db1 the
    /// primary, the other database hosts standbys streaming from it (`lab.sh pg-up`).
    pub fn fresh_postgres(standbys: u32) -> Lab {
        let started = std::time::Instant::now();
        let lab = Lab::fresh_with_standbys(standbys);
        let up = started.elapsed();
        lab_sh(&["pg-up"]);
        eprintln!(
            "lab up in {up:?}, PostgreSQL up {:?} later",
            started.elapsed() - up
        );
        lab
    }

    /// SQL as the superuser over `host`'s own unix socket, in database `postgres`; the
    /// unaligned rows (`|` between columns), trimmed.
    pub fn psql(&self, host: &str, sql: &str) -> String {
        lab_sh(&["psql", host, sql]).trim().to_string()
    }

    /// [`Lab::psql`] in the application's database.
    pub fn psql_app(&self, host: &str, sql: &str) -> String {
        lab_sh(&["psql", host, sql, self.var("LAB_APP_DB")])
            .trim()
            .to_string()
    }

    /// SQL over TCP to `address` as `user` (password from the file `password_var` names),
    /// in database `db`, as an application would send it (`sslmode=prefer`, the lab's CA for
    /// `verify-full`): the rows, or what psql said when it failed.
    pub fn psql_as(
        &self,
        address: &str,
        user: &str,
        password_var: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let out = Command::new("timeout")
            .arg("20")
            .arg(format!("{}/psql", self.var("LAB_PG_BIN")))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", address, "-p", self.var("LAB_PG_PORT")])
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGPASSWORD", self.secret(password_var))
            .env("PGCONNECT_TIMEOUT", "3")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// What `host`'s WAL receiver says (`status`, `sender_host`, `received_tli`; empty
    /// strings without one) and whether the server is in recovery.
    pub fn pg_receiver(&self, host: &str) -> PgReceiver {
        let row = self.psql(
            host,
            "SELECT pg_is_in_recovery(), coalesce(r.status, ''), coalesce(r.sender_host, ''), coalesce(r.received_tli::text, '') \
             FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true",
        );
        let f: Vec<&str> = row.split('|').collect();
        assert_eq!(f.len(), 4, "pg_stat_wal_receiver of {host}: {row:?}");
        PgReceiver {
            in_recovery: f[0] == "t",
            status: f[1].to_string(),
            sender: f[2].to_string(),
            timeline: f[3].parse().ok(),
        }
    }

    /// Waits until `host` streams from `source_ip`; returns the timeline it receives.
    pub fn wait_pg_streaming_from(&self, host: &str, source_ip: &str) -> u32 {
        let limit = std::time::Duration::from_secs(15);
        let started = std::time::Instant::now();
        loop {
            let r = self.pg_receiver(host);
            if r.in_recovery && r.status == "streaming" && r.sender == source_ip {
                return r.timeline.expect("a streaming receiver names its timeline");
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?}: {host} to stream from {source_ip}: {r:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The primary's current WAL location (`pg_current_wal_lsn()`).
    pub fn pg_wal_lsn(&self, host: &str) -> String {
        self.psql(host, "SELECT pg_current_wal_lsn()")
    }

    /// Whether `host` has replayed the WAL up to `lsn`.
    pub fn pg_replayed(&self, host: &str, lsn: &str) -> bool {
        self.psql(
            host,
            &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
        ) == "t"
    }

    /// A pool over db1 (primary) and the standbys db2 and db3 (needs
    /// [`Lab::fresh_postgres`]`(2)`) with a `postgres` monitor and a `postgres_promote` step,
    /// `extra_keys` among the pool's own keys and `extra_steps` after the promoting step.
    pub fn postgres_pool3(
        &self,
        max_failed_checks: u32,
        extra_keys: &str,
        extra_steps: &str,
    ) -> String {
        format!(
            r#"{servers}max_failed_checks = {max_failed_checks}
{keys}
[monitor]
type = "postgres"
user = "{mon}"
password_file = "{mon_pw}"
timeout = "1s"

[[protocol]]
type = "postgres_promote"
name = "promote standby"
user = "{admin}"
password_file = "{admin_pw}"
catch_up_timeout = "10s"
max_lag = "5s"
timeout = "20s"
{extra_steps}"#,
            servers = self.trio(),
            keys = key_lines(extra_keys),
            mon = self.var("LAB_MONITOR_USER"),
            mon_pw = self.var("LAB_MONITOR_PASSWORD_FILE"),
            admin = self.var("LAB_ADMIN_USER"),
            admin_pw = self.var("LAB_ADMIN_PASSWORD_FILE"),
        )
    }

    /// Inserts rows `ids` into `acked` on `host` as the application (one statement each,
    /// over TCP), creating the table first; panics on the first refused row.
    pub fn pg_insert(&self, host: &str, ids: std::ops::Range<u32>) -> Vec<u32> {
        let values: Vec<String> = ids.clone().map(|id| format!("({id})")).collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS acked (id int PRIMARY KEY); INSERT INTO acked (id) VALUES {}",
            values.join(", ")
        );
        let address = self.var(&format!("LAB_{}_IP", host.to_uppercase()));
        self.psql_as(
            address,
            self.var("LAB_WRITER_USER"),
            "LAB_WRITER_PASSWORD_FILE",
            self.var("LAB_APP_DB"),
            &sql,
        )
        .unwrap_or_else(|e| panic!("insert {ids:?} on {host}: {e}"));
        ids.collect()
    }

    /// Asserts that every acknowledged id is in `acked` on `host` (read as the superuser).
    pub fn assert_pg_rows_on(&self, host: &str, acked: &[u32]) {
        assert!(
            acked.len() > 10,
            "the writer wrote too little to mean anything: {}",
            acked.len()
        );
        let have: std::collections::HashSet<u32> = self
            .psql_app(host, "SELECT id FROM acked")
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        let lost: Vec<&u32> = acked.iter().filter(|id| !have.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged rows missing on {host}, the first: {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
    }
}

/// One PostgreSQL server's WAL receiver, from `pg_stat_wal_receiver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgReceiver {
    pub in_recovery: bool,
    /// `streaming`, `waiting`...; empty without a receiver.
    pub status: String,
    pub sender: String,
    pub timeline: Option<u32>,
}

/// An application writing to PostgreSQL: one psql session as the lab's `writer` inserting
/// rows into `acked` one statement at a time (autocommit), each acknowledged when psql prints
/// the id `RETURNING` gave back, that is once the commit was confirmed. It stops at its first
/// error (the server went away, the session was ended, the insert was refused).
#[derive(Debug)]
pub struct PgWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl PgWriter {
    pub fn start(lab: &Lab, address: &str) -> PgWriter {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        lab.psql_as(
            address,
            lab.var("LAB_WRITER_USER"),
            "LAB_WRITER_PASSWORD_FILE",
            lab.var("LAB_APP_DB"),
            "CREATE TABLE IF NOT EXISTS acked (id int PRIMARY KEY)",
        )
        .expect("the writer creates its table");
        let mut child = Command::new(format!("{}/psql", lab.var("LAB_PG_BIN")))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", address, "-p", lab.var("LAB_PG_PORT")])
            .args([
                "-U",
                lab.var("LAB_WRITER_USER"),
                "-d",
                lab.var("LAB_APP_DB"),
            ])
            .env("PGPASSWORD", lab.secret("LAB_WRITER_PASSWORD_FILE"))
            .env("PGCONNECT_TIMEOUT", "3")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start psql");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut id = 0u32;
            let why = loop {
                if s.load(Ordering::Relaxed) {
                    break "stopped".to_string();
                }
                id += 1;
                let sql = format!("INSERT INTO acked (id) VALUES ({id}) RETURNING id;\n");
                if stdin.write_all(sql.as_bytes()).is_err() {
                    break "psql ended".to_string();
                }
                match lines.recv_timeout(Duration::from_secs(10)) {
                    Ok(line) if line.trim() == id.to_string() => a.lock().unwrap().push(id),
                    Ok(line) => break format!("unexpected answer {line:?}"),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        break "psql ended".to_string();
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        break "no answer within 10s".to_string();
                    }
                }
            };
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
            let mut said = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
            format!("{why}: {}", said.trim())
        });
        PgWriter {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// How many inserts were acknowledged so far.
    pub fn acked_so_far(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the writer; returns the acknowledged ids and why it ended (`stopped: ` when it
    /// was still writing, else what psql said).
    pub fn finish(mut self) -> (Vec<u32>, String) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let why = self.thread.take().unwrap().join().unwrap();
        let ids = self.acked.lock().unwrap().clone();
        (ids, why)
    }
}
