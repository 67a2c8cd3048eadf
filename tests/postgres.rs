//! The `postgres` monitor against real PostgreSQL 15 servers started by the test itself on
//! 127.0.0.1 (a primary and a standby streaming from it, scram-sha-256 and md5 logins):
//! `tick` checks them, `report --json` shows what the monitor found. The servers need
//! Debian's `postgresql-15` (scripts/test installs it); without it the test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::Instance;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const SUPERUSER_PASSWORD: &str = "super-secret";

/// A command with a time limit, run as the `postgres` user; its output, or a panic that
/// shows it.
fn as_postgres(args: &[&str], env: &[(&str, &str)]) -> String {
    let (ok, text) = try_as_postgres(args, env);
    assert!(ok, "{args:?}: {text}");
    text
}

/// A command with a time limit, run as the `postgres` user: whether it succeeded, and its
/// output.
fn try_as_postgres(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "runuser", "-u", "postgres", "--", "env"]);
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    let out = cmd.args(args).output().expect("run runuser");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn bin(name: &str) -> String {
    format!("{BIN_DIR}/{name}")
}

/// A directory the `postgres` user owns.
fn postgres_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    let ok = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {}", path.display());
}

/// A fresh cluster made once per test run and copied for each primary: initdb is most of
/// a server's start-up time. Removed when the test process exits.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let initdb = bin("initdb");
        assert!(
            Path::new(&initdb).exists() && is_root(),
            "this test needs root and PostgreSQL 15's binaries in {BIN_DIR}: apt-get install postgresql-15 (scripts/test installs it)"
        );
        let dir = std::env::temp_dir().join(format!("deadpool-pg-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        postgres_dir(&dir);
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        let data = dir.join("data");
        let (pw, data_s) = (pwfile.to_str().unwrap(), data.to_str().unwrap());
        let _ = Command::new("chown").args(["postgres", pw]).status();
        as_postgres(
            &[
                &initdb,
                "-D",
                data_s,
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--auth-local=trust",
                "--pwfile",
                pw,
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            &[],
        );
        std::fs::remove_file(&pwfile).unwrap();
        extern "C" fn remove_template() {
            let dir =
                std::env::temp_dir().join(format!("deadpool-pg-template-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(dir);
        }
        // SAFETY: atexit(3) takes a function without arguments that stays valid for the
        // whole process, which a plain `extern "C" fn` item does.
        unsafe { libc::atexit(remove_template) };
        dir
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `n` free ports from `base` up, spread by process so parallel runs rarely meet; each test
/// of this file has its own `base`, since they run at once in one process.
fn free_ports(base: u16, n: usize) -> Vec<u16> {
    let start = base + (std::process::id() % 400) as u16 * 8;
    (start..start + 2000)
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .take(n)
        .collect()
}

/// One PostgreSQL server in its own directory (data, socket, log), stopped and removed
/// when dropped.
struct Server {
    dir: tempfile::TempDir,
    /// The loopback address it listens on: servers of one pool differ by address.
    address: &'static str,
    port: u16,
}

impl Server {
    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn socket_dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// A directory the postgres user may use, without data yet.
    fn empty(address: &'static str, port: u16) -> Server {
        let dir = tempfile::tempdir().unwrap();
        postgres_dir(dir.path());
        Server { dir, address, port }
    }

    /// A primary on 127.0.0.1.
    fn primary(port: u16) -> Server {
        Server::primary_at("127.0.0.1", port)
    }

    /// A primary: the template copied, replication allowed, logins by password over TCP.
    fn primary_at(address: &'static str, port: u16) -> Server {
        let server = Server::empty(address, port);
        let copied = Command::new("cp")
            .args(["-a"])
            .arg(template().join("data"))
            .arg(server.dir.path())
            .status()
            .unwrap()
            .success();
        assert!(copied);
        server.configure("primary");
        server.tls();
        let hba = "local all all trust\n\
            host replication repl 127.0.0.1/32 scram-sha-256\n\
            host all clearuser 127.0.0.1/32 password\n\
            host all md5user 127.0.0.1/32 md5\n\
            host all all 127.0.0.1/32 scram-sha-256\n\
            host replication repl 127.0.0.0/8 scram-sha-256\n\
            host all all 127.0.0.0/8 scram-sha-256\n";
        std::fs::write(server.dir.path().join("data/pg_hba.conf"), hba).unwrap();
        server.start();
        server.sql(
            "CREATE ROLE deadpool LOGIN PASSWORD 'monitor-pw' IN ROLE pg_monitor; \
             CREATE ROLE repl LOGIN REPLICATION PASSWORD 'repl-pw'; \
             SET password_encryption = 'md5'; \
             CREATE ROLE md5user LOGIN PASSWORD 'md5-pw' IN ROLE pg_monitor; \
             RESET password_encryption; \
             CREATE ROLE clearuser LOGIN PASSWORD 'clear-pw' IN ROLE pg_monitor;",
        );
        server
    }

    /// A standby of `primary` on 127.0.0.1, streaming from it.
    fn standby_of(primary: &Server, port: u16) -> Server {
        Server::standby_at(primary, "127.0.0.1", port)
    }

    /// A standby of `primary` on `address`, streaming from it (its `primary_conninfo`
    /// names the primary's address and port).
    fn standby_at(primary: &Server, address: &'static str, port: u16) -> Server {
        let server = Server::empty(address, port);
        as_postgres(
            &[
                &bin("pg_basebackup"),
                "-h",
                primary.address,
                "-p",
                &primary.port.to_string(),
                "-U",
                "repl",
                "-D",
                &server.data(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            &[("PGPASSWORD", "repl-pw")],
        );
        server.configure("standby");
        server.start();
        server
    }

    /// This server's own port, socket and name (the last setting of a file wins, so a
    /// copied `postgresql.conf` is overridden by appending).
    fn configure(&self, name: &str) {
        let conf = format!(
            "\nlisten_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\ncluster_name = '{name}'\nfsync = off\nmax_wal_senders = 4\nhot_standby = on\nwal_receiver_status_interval = 1s\n",
            self.address,
            self.port,
            self.socket_dir()
        );
        let path = self.dir.path().join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
    }

    /// TLS on: a CA (`ca.pem` in the server's directory) and a certificate for 127.0.0.1
    /// signed by it.
    fn tls(&self) {
        let dir = self.dir.path();
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        for args in [
            format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca"),
            format!("req {ec} -keyout data/server.key -out server.csr -subj /CN=127.0.0.1"),
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out data/server.crt".to_string(),
        ] {
            let out = Command::new("timeout")
                .args(["30", "openssl"])
                .args(args.split(' '))
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "openssl {args}: {out:?}");
        }
        for file in ["data/server.key", "data/server.crt"] {
            let _ = Command::new("chown")
                .arg("postgres")
                .arg(dir.join(file))
                .status();
        }
        std::fs::set_permissions(
            dir.join("data/server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let conf = dir.join("data/postgresql.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let ssl = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n";
        std::fs::write(&conf, text + ssl).unwrap();
    }

    fn start(&self) {
        let log = self.dir.path().join("log").display().to_string();
        let (ok, text) = try_as_postgres(
            &[
                &bin("pg_ctl"),
                "-w",
                "-t",
                "30",
                "-D",
                &self.data(),
                "-l",
                &log,
                "start",
            ],
            &[],
        );
        let server_log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(ok, "pg_ctl start: {text}\nits log:\n{server_log}");
    }

    fn stop(&self) {
        as_postgres(
            &[
                &bin("pg_ctl"),
                "-w",
                "-t",
                "30",
                "-D",
                &self.data(),
                "-m",
                "fast",
                "stop",
            ],
            &[],
        );
    }

    /// Runs SQL as the superuser over the server's socket; its unaligned output.
    fn sql(&self, sql: &str) -> String {
        as_postgres(
            &[
                &bin("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.socket_dir(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            &[],
        )
        .trim()
        .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.dir.path().join("data/postmaster.pid").exists() {
            let _ = Command::new("timeout")
                .args(["30", "runuser", "-u", "postgres", "--"])
                .arg(bin("pg_ctl"))
                .args(["-w", "-D", &self.data(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// A pool with a `postgres` monitor toward `primary` and `secondary` on `port`. It never
/// fails over (the threshold is far), and its one step is a plugin.
fn pool(primary: &str, secondary: &str, port: u16, user: &str, password_file: &str) -> String {
    format!(
        "primary = \"{primary}\"\nsecondary = \"{secondary}\"\nmax_failed_checks = 100\n\n\
         [monitor]\ntype = \"postgres\"\nport = {port}\nuser = \"{user}\"\n\
         password_file = \"{password_file}\"\ntimeout = \"2s\"\n\n\
         [[protocol]]\ntype = \"plugin\"\ncommand = \"step\"\n"
    )
}

/// A pool's monitor with TLS toward both servers, verified against the test's CA.
fn with_tls(pool: String) -> String {
    pool.replace(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\ntls = { ca_file = \"ca.pem\" }\n",
    )
}

/// The servers of `pool` in the last report, by address.
fn servers(inst: &Instance, pool: &str) -> serde_json::Map<String, serde_json::Value> {
    let run = inst.run(&["report", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("report --json");
    let pool = json["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap_or_else(|| panic!("no pool {pool} in {json}"));
    pool["monitor"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["address"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

/// Polls `until` for up to 15 s.
fn eventually(what: &str, until: impl Fn() -> bool) {
    let started = Instant::now();
    while !until() {
        assert!(started.elapsed() < Duration::from_secs(15), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 127.0.0.2 has nothing listening: a server that refuses connections, next to the real
/// one in the same pool (the monitor's port is the pool's, so each real server gets a pool).
#[test]
fn postgres_monitor_sees_primary_standby_and_what_is_wrong() {
    let ports = free_ports(55432, 2);
    let primary = Server::primary(ports[0]);
    let standby = Server::standby_of(&primary, ports[1]);
    eventually("the standby streams", || {
        standby.sql("SELECT status FROM pg_stat_wal_receiver") == "streaming"
    });
    primary.sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1);");
    let lsn = primary.sql("SELECT pg_current_wal_lsn()");
    eventually("the standby replays the insert", || {
        standby.sql(&format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'")) == "t"
    });

    let (p, s) = (primary.port, standby.port);
    let inst = Instance::exact(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[
            (
                "main",
                &pool("127.0.0.1", "127.0.0.2", p, "deadpool", "monitor.pw"),
            ),
            (
                "standby",
                &pool("127.0.0.2", "127.0.0.1", s, "deadpool", "monitor.pw"),
            ),
            (
                "md5",
                &pool("127.0.0.1", "127.0.0.2", p, "md5user", "md5.pw"),
            ),
            (
                "wrong",
                &pool("127.0.0.1", "127.0.0.2", p, "deadpool", "wrong.pw"),
            ),
            (
                "tls",
                &with_tls(pool("127.0.0.1", "127.0.0.2", p, "clearuser", "clear.pw")),
            ),
            (
                "clear",
                &pool("127.0.0.1", "127.0.0.2", p, "clearuser", "clear.pw"),
            ),
        ],
    );
    std::fs::copy(primary.dir.path().join("ca.pem"), inst.path("ca.pem")).unwrap();
    for (file, password) in [
        ("monitor.pw", "monitor-pw"),
        ("md5.pw", "md5-pw"),
        ("wrong.pw", "not-the-password"),
        ("clear.pw", "clear-pw"),
    ] {
        inst.write(file, password);
        std::fs::set_permissions(
            inst.path(file),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    let tick = inst.tick();
    assert!(!tick.stderr.contains("monitor-pw"), "{tick:?}");

    let main = servers(&inst, "main");
    let up = &main["127.0.0.1"];
    assert_eq!(up["health"], "up", "{up}");
    assert_eq!(up["read_only"], false, "{up}");
    let message = up["message"].as_str().unwrap();
    assert!(message.starts_with("PostgreSQL 15."), "{message}");
    assert!(message.contains("up, primary at "), "{message}");
    let position = up["position"].as_str().unwrap();
    assert!(position.ends_with("(timeline 1)"), "{position}");
    let refused = &main["127.0.0.2"];
    assert_eq!(refused["health"], "down", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("refused"),
        "{refused}"
    );

    let standby_pool = servers(&inst, "standby");
    let st = &standby_pool["127.0.0.1"];
    assert_eq!(st["health"], "up", "{st}");
    assert_eq!(st["read_only"], true, "{st}");
    let message = st["message"].as_str().unwrap();
    assert!(
        message.contains("standby streaming from 127.0.0.1, lag 0s"),
        "{message}"
    );
    let r = &st["replication"];
    assert_eq!(r["source"], "127.0.0.1", "{r}");
    assert_eq!(r["receiving"], true, "{r}");
    assert!(
        r["received"].as_str().unwrap().ends_with("(timeline 1)"),
        "{r}"
    );
    assert!(r["applied"].as_str().unwrap().contains('/'), "{r}");
    assert!(r["problem"].is_null(), "{r}");

    let md5 = servers(&inst, "md5");
    assert_eq!(md5["127.0.0.1"]["health"], "up", "{}", md5["127.0.0.1"]);
    assert_eq!(md5["127.0.0.1"]["read_only"], false);

    let wrong = &servers(&inst, "wrong")["127.0.0.1"];
    assert_eq!(wrong["health"], "degraded", "{wrong}");
    let message = wrong["message"].as_str().unwrap();
    assert!(
        message.starts_with("alive but refused the login: FATAL 28P01"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");

    // A password asked for in clear text goes only over TLS (verified against the CA).
    let tls = &servers(&inst, "tls")["127.0.0.1"];
    assert_eq!(tls["health"], "up", "{tls}");
    assert!(
        tls["message"]
            .as_str()
            .unwrap()
            .contains(" up over TLS, primary at "),
        "{tls}"
    );
    let clear = &servers(&inst, "clear")["127.0.0.1"];
    assert_eq!(clear["health"], "degraded", "{clear}");
    assert!(
        clear["message"].as_str().unwrap().contains("clear text"),
        "{clear}"
    );

    standby.stop();
    inst.tick();
    let stopped = &servers(&inst, "standby")["127.0.0.1"];
    assert_eq!(stopped["health"], "down", "{stopped}");
    assert!(
        stopped["message"]
            .as_str()
            .unwrap()
            .starts_with("down: 127.0.0.1:"),
        "{stopped}"
    );
    // The primary, its standby gone, still says it is the primary.
    assert_eq!(servers(&inst, "main")["127.0.0.1"]["health"], "up");
}

impl Server {
    /// Kills the postmaster with SIGKILL: a crash, nothing shut down cleanly.
    fn crash(&self) {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).unwrap();
        let pid = text.lines().next().unwrap().trim().to_string();
        let ok = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -9 {pid}");
        eventually("the crashed server stops answering", || {
            std::net::TcpStream::connect((self.address, self.port)).is_err()
        });
        // Until its process is reaped, a new postmaster refuses the data directory.
        let pid: i32 = pid.parse().unwrap();
        eventually("the crashed postmaster is gone", || {
            // SAFETY: kill(2) with signal 0 only checks that the process exists.
            unsafe { libc::kill(pid, 0) != 0 }
        });
    }

    /// The WAL sender this standby streams from, when it streams.
    fn streams_from(&self) -> String {
        self.sql("SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'")
    }
}

/// Three servers on one port, told apart by their loopback address; a failover at the
/// first failed check, promoted by `postgres_promote` as the superuser.
fn promoting_pool(port: u16) -> String {
    format!(
        "primary = \"127.0.0.1\"\nstandbys = [\"127.0.0.2\", \"127.0.0.3\"]\nmax_failed_checks = 1\n\n\
         [monitor]\ntype = \"postgres\"\nport = {port}\nuser = \"deadpool\"\n\
         password_file = \"monitor.pw\"\ntimeout = \"2s\"\n\n\
         [[protocol]]\ntype = \"postgres_promote\"\nuser = \"postgres\"\n\
         password_file = \"admin.pw\"\ncatch_up_timeout = \"10s\"\ntimeout = \"40s\"\n"
    )
}

/// A crashed primary: a standby is promoted and the other streams from it. Then a manual
/// promote while that primary is alive: it is fenced read-only, the third server promoted,
/// and nothing written before is lost.
#[test]
fn postgres_promote_fails_over_and_promotes_by_hand() {
    let port = free_ports(58432, 1)[0];
    let first = Server::primary_at("127.0.0.1", port);
    first.sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1);");
    let second = Server::standby_at(&first, "127.0.0.2", port);
    let third = Server::standby_at(&first, "127.0.0.3", port);
    for s in [&second, &third] {
        eventually("the standbys stream", || s.streams_from() == "127.0.0.1");
    }
    let inst = Instance::exact(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &promoting_pool(port))],
    );
    write_secrets(&inst);
    let tick = inst.tick();
    assert_eq!(tick.code, 0, "{tick:?}");

    first.crash();
    tick_until_failed_over(&inst);
    let active = inst.pool_json("db")["active_address"]
        .as_str()
        .unwrap()
        .to_string();
    let (new, other) = if active == "127.0.0.2" {
        (&second, &third)
    } else {
        (&third, &second)
    };
    assert_eq!(new.address, active);
    assert_eq!(new.sql("SELECT pg_is_in_recovery()"), "f");
    new.sql("INSERT INTO t VALUES (2)");
    eventually("the other standby streams from the new primary", || {
        other.streams_from() == active
    });
    eventually("the other standby has the new row", || {
        other.sql("SELECT count(*) FROM t") == "2"
    });

    // By hand, the primary alive: the soft fence, the catch-up, the promotion.
    new.sql("INSERT INTO t VALUES (3)");
    let run = inst.run(&["promote", "db", other.address, "--yes"]);
    assert_eq!(
        inst.pool_json("db")["active_address"],
        other.address,
        "{run:?}"
    );
    assert_eq!(
        new.sql("SHOW default_transaction_read_only"),
        "on",
        "{run:?}"
    );
    assert_eq!(new.sql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(other.sql("SELECT pg_is_in_recovery()"), "f", "{run:?}");
    other.sql("INSERT INTO t VALUES (4)");
    assert_eq!(
        other.sql("SELECT string_agg(i::text, ',' ORDER BY i) FROM t"),
        "1,2,3,4"
    );
}

/// The password files of [`promoting_pool`] in `inst`.
fn write_secrets(inst: &Instance) {
    for (file, password) in [
        ("monitor.pw", "monitor-pw"),
        ("admin.pw", SUPERUSER_PASSWORD),
    ] {
        inst.write(file, password);
        std::fs::set_permissions(
            inst.path(file),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
}

/// The report's problems (`report --json`) as `STATUS message` lines.
fn problems(inst: &Instance) -> Vec<String> {
    let run = inst.run(&["report", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("report --json");
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} (hint: {})",
                p["status"].as_str().unwrap(),
                p["message"].as_str().unwrap(),
                p["hint"].as_str().unwrap()
            )
        })
        .collect()
}

/// Ticks until the pool is failed over (at most 30 s).
fn tick_until_failed_over(inst: &Instance) {
    let started = Instant::now();
    while inst.state_of("db").0 != "failed_over" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover: {}\n{}",
            inst.pool_json("db"),
            inst.history()
        );
        inst.tick();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The standby that kept receiving (never_promote) has replayed past the promoted one when
/// the primary crashes: after the promotion it cannot follow the new timeline. The step
/// names it FORKED OFF, CRITICAL, and the chain goes on; the report names it forked off,
/// the old primary restarted writable is a split brain in PostgreSQL's terms, and a
/// failover would not promote the forked standby whatever it received.
#[test]
fn a_standby_past_the_promotion_point_forks_off() {
    let port = free_ports(59432, 1)[0];
    let first = Server::primary_at("127.0.0.1", port);
    first.sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1);");
    let second = Server::standby_at(&first, "127.0.0.2", port);
    let third = Server::standby_at(&first, "127.0.0.3", port);
    for s in [&second, &third] {
        eventually("the standbys stream", || s.streams_from() == "127.0.0.1");
    }
    let pool = promoting_pool(port).replace(
        "max_failed_checks = 1\n",
        "max_failed_checks = 1\nmax_promote_lag = \"1h\"\nnever_promote = [\"127.0.0.3\"]\n",
    ) + "\n[[protocol]]\ntype = \"exec\"\nname = \"after\"\nhosts = [\"local\"]\nexec_command = \"true\"\n";
    let inst = Instance::exact(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &pool)],
    );
    write_secrets(&inst);
    assert_eq!(inst.tick().code, 0);

    // The second server stops receiving; the third gets 999 more rows.
    second.sql("ALTER SYSTEM SET primary_conninfo = ''");
    second.sql("SELECT pg_reload_conf()");
    eventually("the second server's WAL receiver stops", || {
        second.sql("SELECT count(*) FROM pg_stat_wal_receiver") == "0"
    });
    first.sql("INSERT INTO t SELECT generate_series(2, 1000)");
    let lsn = first.sql("SELECT pg_current_wal_lsn()");
    eventually("the third server replays the rows", || {
        third.sql(&format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'")) == "t"
    });
    first.crash();
    tick_until_failed_over(&inst);
    assert_eq!(inst.pool_json("db")["active_address"], "127.0.0.2");
    assert_eq!(second.sql("SELECT pg_is_in_recovery()"), "f");

    let events = inst.events("db");
    let step = |name: &str, host: &str| {
        events
            .iter()
            .find(|e| e["event"] == "step" && e["step"] == name && e["host"] == host)
            .unwrap_or_else(|| panic!("no step event of {name} on {host}: {}", inst.history()))
    };
    let forked = step("postgres_promote", "127.0.0.3");
    assert_eq!(forked["status"], "CRITICAL", "{forked}");
    let message = forked["message"].as_str().unwrap();
    assert!(
        message.starts_with("FORKED OFF, it cannot follow 127.0.0.2: replayed to ")
            && message.contains(", past the promotion point ")
            && message.contains(" where timeline 2 began: it serves reads of data the new primary does not have; rebuild it (pg_basebackup"),
        "{message}"
    );
    assert_eq!(step("postgres_promote", "127.0.0.2")["status"], "OK");
    assert_eq!(step("after", "local")["status"], "OK", "the chain went on");
    let whole = step("postgres_promote", "");
    assert_eq!(
        (whole["status"].as_str(), whole["message"].as_str()),
        (
            Some("CRITICAL"),
            Some(
                "step done on 2 host(s): its own part succeeded; 127.0.0.3 beside it needs a person"
            )
        )
    );
    // What it serves: rows the new primary never had.
    assert_eq!(third.sql("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(third.sql("SELECT count(*) FROM t"), "1000");
    assert_eq!(second.sql("SELECT count(*) FROM t"), "1");

    inst.tick();
    let found = problems(&inst);
    assert!(
        found.iter().any(|p| p.starts_with(
            "CRITICAL db: standby standby2 (127.0.0.3) forked off: on timeline 1 while the active server 127.0.0.2 is on timeline 2, and it does not stream"
        ) && p.contains("rebuild it as a standby of 127.0.0.2")),
        "{found:#?}"
    );

    // The old primary back after its crash: a writable primary on the old timeline.
    first.start();
    inst.tick();
    let found = problems(&inst);
    assert!(
        found.iter().any(|p| p.starts_with(
            "CRITICAL db: split-brain risk: standby primary (127.0.0.1) is out of recovery, writable while the pool is failed over; second server out of recovery (split brain): stop it (pg_ctl stop -m fast) and rebuild it as a standby"
        )),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|p| p.contains("read_only")),
        "no MySQL words for PostgreSQL: {found:#?}"
    );

    // Were the new primary to fail now, the forked standby would not be promoted, though
    // it received further than anything on the new timeline.
    first.stop();
    inst.write(
        "pools/db.toml",
        &pool.replace("never_promote = [\"127.0.0.3\"]\n", ""),
    );
    inst.tick();
    let dry = inst.run(&["tick", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("127.0.0.3 is on timeline 1, behind timeline 2"),
        "{dry:?}"
    );
}

/// `fence = "stop"` with SSH reaching nothing on the primary (a closed port): a manual
/// promote while the primary answers is refused by the preflight with nothing changed,
/// since the stop it needs cannot run. Once the primary has crashed, the failover goes
/// around it and the stop it tried is a note in its history, not a reason to wait.
#[test]
fn postgres_promote_fence_stop_needs_ssh_only_while_the_old_primary_answers() {
    let ports = free_ports(59232, 2);
    let (port, closed) = (ports[0], ports[1]);
    let first = Server::primary_at("127.0.0.1", port);
    first.sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1);");
    let second = Server::standby_at(&first, "127.0.0.2", port);
    eventually("the standby streams", || {
        second.streams_from() == "127.0.0.1"
    });
    let pool = format!(
        "primary = \"127.0.0.1\"\nsecondary = \"127.0.0.2\"\nmax_failed_checks = 1\n\n\
         [monitor]\ntype = \"postgres\"\nport = {port}\nuser = \"deadpool\"\n\
         password_file = \"monitor.pw\"\ntimeout = \"2s\"\n\n\
         [[protocol]]\ntype = \"postgres_promote\"\nuser = \"postgres\"\n\
         password_file = \"admin.pw\"\ncatch_up_timeout = \"10s\"\ntimeout = \"40s\"\n\
         fence = \"stop\"\ndata_dir = \"{}\"\nssh = {{ port = {closed}, connect_timeout = \"1s\" }}\n",
        first.data()
    );
    let inst = Instance::exact(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &pool)],
    );
    for (file, password) in [
        ("monitor.pw", "monitor-pw"),
        ("admin.pw", SUPERUSER_PASSWORD),
    ] {
        inst.write(file, password);
        std::fs::set_permissions(
            inst.path(file),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    assert_eq!(inst.tick().code, 0);

    let dry = inst.run(&["promote", "db", "127.0.0.2", "--dry-run"]);
    let stop = format!(
        "sudo -n -u postgres {} stop -D {} -m fast -w -t 10",
        bin("pg_ctl"),
        first.data()
    );
    assert!(dry.stdout.contains(&stop), "{dry:?}");

    let run = inst.run(&["promote", "db", "127.0.0.2", "--yes"]);
    assert_ne!(run.code, 0, "{run:?}");
    let said = format!("{}{}{}", run.stdout, run.stderr, inst.history());
    assert!(
        said.contains("answers and could not be stopped") && said.contains("over SSH"),
        "{said}"
    );
    assert_eq!(
        inst.pool_json("db")["active_address"],
        "127.0.0.1",
        "{run:?}"
    );
    assert_eq!(first.sql("SHOW default_transaction_read_only"), "off");
    assert_eq!(second.sql("SELECT pg_is_in_recovery()"), "t");
    first.sql("INSERT INTO t VALUES (2)");

    eventually("the standby has the second row", || {
        second.sql("SELECT count(*) FROM t") == "2"
    });
    first.crash();
    let started = Instant::now();
    while inst.state_of("db").0 != "failed_over" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover: {}\n{}",
            inst.pool_json("db"),
            inst.history()
        );
        inst.tick();
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(inst.pool_json("db")["active_address"], "127.0.0.2");
    assert_eq!(second.sql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(second.sql("SELECT count(*) FROM t"), "2");
    let outputs: String = inst
        .events("db")
        .iter()
        .filter_map(|e| e["output"].as_str().map(str::to_string))
        .collect();
    assert!(
        outputs.contains("old primary 127.0.0.1 not stopped over SSH (at most 3s)"),
        "{outputs}\n{}",
        inst.history()
    );
}

/// [`promoting_pool`] as a pair: the primary and one standby.
fn promoting_pair(port: u16) -> String {
    promoting_pool(port).replace(
        "standbys = [\"127.0.0.2\", \"127.0.0.3\"]",
        "secondary = \"127.0.0.2\"",
    )
}

/// The pool's one `lost` event (`history --json`), with the failover's end.
fn lost_event(inst: &Instance) -> (serde_json::Value, serde_json::Value) {
    let events = inst.events("db");
    let of = |kind: &str| {
        let found: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} event: {}", inst.history());
        found[0].clone()
    };
    (of("lost"), of("failed_over"))
}

/// `0/3000148 (timeline 1)` as a WAL location for SQL: `0/3000148`.
fn location(text: &str) -> String {
    text.split(' ').next().unwrap().to_string()
}

/// Asynchronous, then synchronous replication as the report and check-config tell it;
/// then a crash once the standby has everything the primary was last seen with: the
/// failover says it lost nothing, in history and in every report.
#[test]
fn a_failover_after_the_standby_caught_up_loses_nothing() {
    let port = free_ports(56432, 1)[0];
    let first = Server::primary_at("127.0.0.1", port);
    first.sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1);");
    let second = Server::standby_at(&first, "127.0.0.2", port);
    eventually("the standby streams", || {
        second.streams_from() == "127.0.0.1"
    });
    let inst = Instance::exact(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &promoting_pair(port))],
    );
    write_secrets(&inst);
    assert_eq!(inst.tick().code, 0);

    let durability = &inst.pool_json("db")["durability"];
    assert_eq!(durability["server"], "127.0.0.1", "{durability}");
    assert_eq!(durability["guaranteed"], false, "{durability}");
    assert_eq!(
        durability["how"], "synchronous_standby_names is empty",
        "{durability}"
    );
    let check = inst.run(&["check-config"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check.stdout.contains(
            "pool db: replication from 127.0.0.1 is asynchronous (synchronous_standby_names is empty): writes it acknowledged that no standby had received yet are lost at a failover, and deadpool does not salvage them"
        ),
        "{check:?}"
    );
    assert!(
        !check.stdout.contains("warning: pool db: replication"),
        "a note, not a warning: {check:?}"
    );

    first.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    first.sql("SELECT pg_reload_conf()");
    eventually("the standby is synchronous", || {
        first.sql("SELECT sync_state FROM pg_stat_replication") == "sync"
    });
    first.sql("INSERT INTO t VALUES (2)");
    inst.tick();
    let durability = &inst.pool_json("db")["durability"];
    assert_eq!(durability["guaranteed"], true, "{durability}");
    assert_eq!(
        durability["how"],
        "synchronous_standby_names = '*', synchronous_commit = on, 1 synchronous standby"
    );
    let full = inst.run(&["report", "--full"]).stdout;
    assert!(
        full.contains("    durability of 127.0.0.1: writes the primary acknowledges are on a standby first (synchronous_standby_names = '*'"),
        "{full}"
    );
    let check = inst.run(&["check-config"]);
    assert!(!check.stdout.contains("is asynchronous"), "{check:?}");

    // The standby has all the primary had when the last tick saw it.
    let seen = location(
        servers(&inst, "db")["127.0.0.1"]["position"]
            .as_str()
            .unwrap(),
    );
    eventually("the standby replays what the tick saw", || {
        second.sql(&format!("SELECT pg_last_wal_replay_lsn() >= '{seen}'")) == "t"
    });
    first.crash();
    tick_until_failed_over(&inst);
    assert_eq!(second.sql("SELECT count(*) FROM t"), "2");

    let (lost, end) = lost_event(&inst);
    assert_eq!(
        (lost["status"].as_str(), lost["message"].as_str()),
        (Some("OK"), Some("nothing lost")),
        "{lost}"
    );
    let loss = &lost["lost"];
    assert_eq!(loss["verdict"]["kind"], "nothing", "{loss}");
    assert_eq!(loss["unit"], "wal");
    assert_eq!(loss["old_primary"]["address"], "127.0.0.1");
    assert_eq!(
        location(loss["old_primary"]["position"]["text"].as_str().unwrap()),
        seen,
        "{loss}"
    );
    assert_eq!(loss["old_primary"]["position"]["timeline"], 1, "{loss}");
    assert_eq!(loss["new_primary"]["from"], "promotion", "{loss}");
    assert!(
        loss["new_primary"]["how"]
            .as_str()
            .unwrap()
            .starts_with("pg_last_wal_replay_lsn() after the promotion, where timeline 2 began"),
        "{loss}"
    );
    let held = location(loss["new_primary"]["position"]["text"].as_str().unwrap());
    assert_eq!(
        second.sql(&format!("SELECT pg_wal_lsn_diff('{held}', '{seen}') >= 0")),
        "t",
        "{loss}"
    );
    let end = end["message"].as_str().unwrap();
    assert!(end.contains("; nothing lost; locked until reset"), "{end}");

    let pool = inst.pool_json("db");
    assert_eq!(pool["lost"]["words"], "nothing lost", "{pool}");
    let full = inst.run(&["report", "--full"]).stdout;
    assert!(
        full.contains("\n  lost at the failover: nothing lost\n    old primary 127.0.0.1: "),
        "{full}"
    );
    let nagios = inst.run(&["report", "--nagios"]).stdout;
    assert!(
        nagios.contains("; nothing lost; locked until reset"),
        "{nagios}"
    );
    let history = inst.history();
    assert!(
        history
            .lines()
            .any(|l| l.contains(" lost ") && l.contains(" OK ") && l.ends_with(" nothing lost")),
        "{history}"
    );
}

/// The standby stops receiving; rows written on the primary, which a tick sees; the
/// primary crashes and the standby is promoted all the same (`max_promote_lag` allows
/// it): the failover says how much WAL it lost at most, as PostgreSQL counts it.
#[test]
fn a_failover_from_a_standby_that_stopped_receiving_says_what_it_lost() {
    let port = free_ports(57432, 1)[0];
    let first = Server::primary_at("127.0.0.1", port);
    first.sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1);");
    let second = Server::standby_at(&first, "127.0.0.2", port);
    eventually("the standby streams", || {
        second.streams_from() == "127.0.0.1"
    });
    let pool = promoting_pair(port).replace(
        "max_failed_checks = 1\n",
        "max_failed_checks = 1\nmax_promote_lag = \"1h\"\n",
    );
    let inst = Instance::exact(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &pool)],
    );
    write_secrets(&inst);
    assert_eq!(inst.tick().code, 0);

    second.sql("ALTER SYSTEM SET primary_conninfo = ''");
    second.sql("SELECT pg_reload_conf()");
    eventually("the standby's WAL receiver stops", || {
        second.sql("SELECT count(*) FROM pg_stat_wal_receiver") == "0"
    });
    first.sql("INSERT INTO t SELECT generate_series(2, 1000)");
    let written = first.sql("SELECT pg_current_wal_lsn()");
    inst.tick();
    let seen = location(
        servers(&inst, "db")["127.0.0.1"]["position"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        first.sql(&format!(
            "SELECT pg_wal_lsn_diff('{seen}', '{written}') >= 0"
        )),
        "t",
        "the tick saw the rows written"
    );
    first.crash();
    tick_until_failed_over(&inst);
    assert_eq!(
        second.sql("SELECT count(*) FROM t"),
        "1",
        "the rows are lost"
    );

    let (lost, end) = lost_event(&inst);
    assert_eq!(lost["status"], "WARNING", "{lost}");
    let loss = &lost["lost"];
    assert_eq!(loss["verdict"]["kind"], "at_most", "{loss}");
    assert_eq!(loss["verdict"]["of"], "wal_bytes", "{loss}");
    let n = loss["verdict"]["amount"].as_u64().unwrap();
    assert!(n > 0, "{loss}");
    let old = location(loss["old_primary"]["position"]["text"].as_str().unwrap());
    let held = location(loss["new_primary"]["position"]["text"].as_str().unwrap());
    assert_eq!(old, seen, "{loss}");
    assert_eq!(
        second.sql(&format!("SELECT pg_wal_lsn_diff('{old}', '{held}')")),
        n.to_string(),
        "{loss}"
    );
    let words = lost["message"].as_str().unwrap();
    assert!(
        words.starts_with(&format!("at most {n} bytes of WAL lost, last seen "))
            && words.ends_with(" before the outage"),
        "{words}"
    );
    assert_eq!(loss["words"], words);
    let output = lost["output"].as_str().unwrap();
    assert!(
        output.contains(&format!("old primary 127.0.0.1: {old} (timeline 1) at its last healthy check"))
            && output.contains(&format!("new primary 127.0.0.2: held {held} when it was made writable (pg_last_wal_replay_lsn() after the promotion")),
        "{output}"
    );
    assert!(
        end["message"]
            .as_str()
            .unwrap()
            .contains(&format!("; {words}; locked until reset")),
        "{end}"
    );

    let pool = inst.pool_json("db");
    assert_eq!(pool["lost"]["words"], words, "{pool}");
    let full = inst.run(&["report", "--full"]).stdout;
    assert!(
        full.contains(&format!("\n  lost at the failover: {words}\n")),
        "{full}"
    );
    let nagios = inst.run(&["report", "--nagios"]);
    assert!(nagios.stdout.contains(words), "{nagios:?}");
}
