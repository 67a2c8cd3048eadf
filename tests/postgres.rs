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
    assert!(out.status.success(), "{args:?}: {text}");
    text
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

/// Two free ports from 55432 up, spread by process so parallel runs rarely meet.
fn free_ports(n: usize) -> Vec<u16> {
    let start = 55432 + (std::process::id() % 400) as u16 * 8;
    (start..start + 2000)
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .take(n)
        .collect()
}

/// One PostgreSQL server in its own directory (data, socket, log), stopped and removed
/// when dropped.
struct Server {
    dir: tempfile::TempDir,
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
    fn empty(port: u16) -> Server {
        let dir = tempfile::tempdir().unwrap();
        postgres_dir(dir.path());
        Server { dir, port }
    }

    /// A primary: the template copied, replication allowed, logins by password over TCP.
    fn primary(port: u16) -> Server {
        let server = Server::empty(port);
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
            host all all 127.0.0.1/32 scram-sha-256\n";
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

    /// A standby of `primary`, streaming from it.
    fn standby_of(primary: &Server, port: u16) -> Server {
        let server = Server::empty(port);
        as_postgres(
            &[
                &bin("pg_basebackup"),
                "-h",
                "127.0.0.1",
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
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\ncluster_name = '{name}'\nfsync = off\nmax_wal_senders = 4\nhot_standby = on\nwal_receiver_status_interval = 1s\n",
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
        as_postgres(
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
    let ports = free_ports(2);
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
