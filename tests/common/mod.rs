//! A deadpool instance in a temporary directory, driven through the real binary. Its
//! monitor and steps are real plugins (shell scripts) steered by flag files, so a test can
//! make a server "down" or a step fail without any fake inside deadpool.

#![allow(dead_code)]

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_deadpool");

/// Monitor plugin: CRITICAL when `flags/down-HOST` exists, WARNING for `flags/warn-HOST`.
const MONITOR: &str = r#"#!/bin/sh
d="$(dirname "$0")/../flags"
if [ -e "$d/down-$1" ]; then echo "CRITICAL - $1 is down (flag)"; exit 2; fi
if [ -e "$d/warn-$1" ]; then echo "WARNING - $1 is unhappy (flag)"; exit 1; fi
echo "OK - $1 answers"
"#;

/// Step plugin: logs every call with its environment; fails or hangs on flag files.
const STEP: &str = r#"#!/bin/sh
top="$(dirname "$0")/.."
echo "$DEADPOOL_STEP $1 pool=$DEADPOOL_POOL action=$DEADPOOL_ACTION primary=$DEADPOOL_PRIMARY secondary=$DEADPOOL_SECONDARY old=$DEADPOOL_OLD_PRIMARY new=$DEADPOOL_NEW_PRIMARY dry=$DEADPOOL_DRY_RUN color=${DEADPOOL_OPT_COLOR:-}" >> "$top/steps.log"
if [ -e "$top/flags/fail-$1-$DEADPOOL_STEP" ]; then echo "failing $1 on purpose"; exit 2; fi
if [ -e "$top/flags/warn-$1-$DEADPOOL_STEP" ]; then echo "warning from $1"; exit 1; fi
if [ -e "$top/flags/hang-$1-$DEADPOOL_STEP" ]; then
    sleep 300 &
    echo $! > "$top/bgpid"
    touch "$top/hanging"
    sleep 300
fi
echo "$1 of $DEADPOOL_STEP ok"
"#;

pub const TWO_STEP_POOL: &str = r#"
primary = "db1"
secondary = "db2"
max_failed_checks = 3

[monitor]
type = "nagios"
command = "monitor {host}"
timeout = "2s"

[[protocol]]
type = "plugin"
name = "one"
command = "step"
color = "blue"
timeout = "3s"

[[protocol]]
type = "plugin"
name = "two"
command = "step"
"#;

#[derive(Debug)]
pub struct Instance {
    pub tmp: tempfile::TempDir,
    /// The detection mode of the test that made it (see [`detection`]), kept here for the
    /// helpers that depend on it, wherever they run; `None` outside [`both_modes!`].
    detection: Option<Detection>,
}

impl Instance {
    /// An instance with one pool `db` (two plugin steps) and `tick_interval` of 1s.
    pub fn new() -> Instance {
        Instance::with(
            "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
            &[("db", TWO_STEP_POOL)],
        )
    }

    /// An instance with these settings and pools, each pool in the detection mode of this
    /// test (see [`detection`]).
    pub fn with(settings: &str, pools: &[(&str, &str)]) -> Instance {
        let mode = detection();
        let pools: Vec<(&str, String)> =
            pools.iter().map(|(n, b)| (*n, in_mode(b, mode))).collect();
        let pools: Vec<(&str, &str)> = pools.iter().map(|(n, b)| (*n, b.as_str())).collect();
        Instance::exact(settings, &pools)
    }

    /// An instance with these pools exactly as written, whatever the detection mode of this
    /// test: for tests of the configuration's own text (goldens, parsing).
    pub fn exact(settings: &str, pools: &[(&str, &str)]) -> Instance {
        let tmp = tempfile::tempdir().expect("tempdir");
        let detection = DETECTION.get();
        let inst = Instance { tmp, detection };
        fs::create_dir_all(inst.dir().join("pools")).unwrap();
        fs::create_dir_all(inst.dir().join("plugins")).unwrap();
        fs::create_dir_all(inst.dir().join("flags")).unwrap();
        inst.write(
            "deadpool.toml",
            &format!("state_dir = \"state\"\n{settings}"),
        );
        for (name, body) in pools {
            inst.write(&format!("pools/{name}.toml"), body);
        }
        inst.script("plugins/monitor", MONITOR);
        inst.script("plugins/step", STEP);
        inst
    }

    /// The detection mode of the test that made this instance, on any thread.
    pub fn detection(&self) -> Detection {
        self.detection.expect(UNSET)
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        fs::write(self.path(rel), text).unwrap();
    }

    pub fn script(&self, rel: &str, text: &str) {
        self.write(rel, text);
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn flag(&self, name: &str) {
        fs::write(self.path(&format!("flags/{name}")), "").unwrap();
    }

    pub fn unflag(&self, name: &str) {
        let _ = fs::remove_file(self.path(&format!("flags/{name}")));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(self.dir()).args(args);
        cmd.env_remove("DEADPOOL_CONFIG")
            .env_remove("DEADPOOL_LOG")
            .env_remove("JOURNAL_STREAM");
        cmd.env("USER", "tester").env_remove("SUDO_USER");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run deadpool"))
    }

    pub fn tick(&self) -> Run {
        self.run(&["tick"])
    }

    /// Writes a pool file in the detection mode of this instance.
    pub fn write_pool(&self, name: &str, body: &str) {
        self.write(
            &format!("pools/{name}.toml"),
            &in_mode(body, self.detection()),
        );
    }

    /// The failing ticks that come before the deciding one, for a pool that counts to
    /// `n + 1`: `n` ticks when counting (each leaves `pool` counting `k` failures, with no
    /// step run), none with `down_for` (the tick that sees the failure confirms it). The
    /// next tick is the one that decides.
    pub fn ticks_before_threshold(&self, pool: &str, n: u64) {
        if self.detection() == Detection::Time {
            return;
        }
        let promotes = self.calls("promote").len();
        for k in 1..=n {
            let r = self.tick();
            assert_eq!(r.code, 0, "failing tick {k} of {n}: {r:?}");
            assert_eq!(self.state_of(pool).2, k, "failing tick {k} of {n}");
        }
        assert_eq!(
            self.calls("promote").len(),
            promotes,
            "no step may run before the threshold"
        );
    }

    /// An outage of `host` that ends before the threshold of a pool counting to `n + 1`:
    /// counting, `n` failing ticks and then a good one; with `down_for`, one tick during
    /// which `host` is down for a third of `down_for` and then answers again. The flag
    /// `down-HOST` is gone afterwards.
    pub fn blip(&self, host: &str, n: u64) {
        let flag = format!("down-{host}");
        self.flag(&flag);
        match self.detection() {
            Detection::Count => {
                for _ in 0..n {
                    let r = self.tick();
                    assert_eq!(r.code, 0, "{r:?}");
                }
                self.unflag(&flag);
                let r = self.tick();
                assert_eq!(r.code, 0, "{r:?}");
            }
            Detection::Time => {
                let tick = self
                    .command(&["tick"])
                    .env("DEADPOOL_LOG", "info")
                    .spawn()
                    .expect("start deadpool tick");
                std::thread::sleep(down_for(n + 1) / 3);
                self.unflag(&flag);
                let out = tick.wait_with_output().expect("wait for the tick");
                let r = Run::from(out);
                assert_eq!(r.code, 0, "{r:?}");
                assert!(
                    r.stderr.contains("answers again after"),
                    "the tick must have seen the outage and its end: {r:?}"
                );
            }
        }
    }

    /// The pool's state as `report --json` shows it.
    pub fn pool_json(&self, pool: &str) -> serde_json::Value {
        let r = self.run(&["report", "--json"]);
        assert_eq!(r.code, 0, "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pool)
            .cloned()
            .expect("pool in report")
    }

    pub fn state_of(&self, pool: &str) -> (String, String, u64) {
        let p = self.pool_json(pool);
        (
            p["state"].as_str().unwrap_or("none").to_string(),
            p["active"].as_str().unwrap().to_string(),
            p["failures"].as_u64().unwrap(),
        )
    }

    pub fn steps_log(&self) -> Vec<String> {
        fs::read_to_string(self.path("steps.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Lines of the step log for one action (`preflight`, `promote`, `check`).
    pub fn calls(&self, action: &str) -> Vec<String> {
        self.steps_log()
            .into_iter()
            .filter(|l| l.split(' ').nth(1) == Some(action))
            .collect()
    }

    pub fn db_bytes(&self) -> Vec<u8> {
        fs::read(self.path("state/deadpool.db")).unwrap_or_default()
    }

    pub fn history(&self) -> String {
        self.run(&["history", "--limit", "1000"]).stdout
    }

    /// One pool's history events, as `history --json` gives them.
    pub fn events(&self, pool: &str) -> Vec<serde_json::Value> {
        let r = self.run(&["history", "--pool", pool, "--limit", "1000", "--json"]);
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// How a test's pools confirm outages. Every test that writes a pool through [`Instance`]
/// runs in both modes ([`both_modes!`]): as written, where pools count failed checks of
/// ticks (`max_failed_checks`), and with every such pool confirming an outage by time instead
/// (`down_for`, re-checked within one tick). Decisions must be exactly as safe in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    /// `max_failed_checks`: a count of ticks.
    Count,
    /// `down_for`: a time, confirmed by re-checks within one tick.
    Time,
}

thread_local! {
    /// The detection mode of the test running on this thread, set by [`in_detection`].
    static DETECTION: Cell<Option<Detection>> = const { Cell::new(None) };
}

const UNSET: &str = "no detection mode: a test that writes pools through `Instance` must be \
    defined with `both_modes!` (tests/common), and a thread it starts must ask the `Instance`";

/// The detection mode of the test running on this thread; panics outside [`both_modes!`]
/// (and on threads a test starts: there, ask its [`Instance::detection`]).
pub fn detection() -> Detection {
    DETECTION.get().expect(UNSET)
}

/// Runs `test` in the detection mode `mode` (on this thread): what the two test functions of
/// [`both_modes!`] do.
pub fn in_detection(mode: Detection, test: fn()) {
    DETECTION.set(Some(mode));
    test();
}

/// Defines the test `NAME` twice, once in each detection mode: `NAME::count` and
/// `NAME::down_for`, each running the function `NAME` (next to it, without `#[test]`) in its
/// mode (see [`Detection`]). Attributes for both go before the name:
/// `both_modes!(#[ignore = "why"] NAME);`. A plain `cargo test` runs both.
#[macro_export]
macro_rules! both_modes {
    ($(#[$meta:meta])* $name:ident) => {
        mod $name {
            #[test]
            $(#[$meta])*
            fn count() {
                $crate::common::in_detection($crate::common::Detection::Count, super::$name);
            }

            #[test]
            $(#[$meta])*
            fn down_for() {
                $crate::common::in_detection($crate::common::Detection::Time, super::$name);
            }
        }
    };
}

/// The `down_for` that stands for `max_failed_checks = n` with the tests' 1 s tick: the time
/// from the first to the last of `n` checks, (n - 1) x 500 ms, and at least 100 ms.
pub fn down_for(n: u64) -> Duration {
    Duration::from_millis((n.saturating_sub(1) * 500).max(100))
}

/// A pool's text in detection mode `mode`: with `down_for`, its line
/// `max_failed_checks = N` becomes `down_for` (see [`down_for`]) with re-checks every 50 ms
/// (100 ms once `down_for` allows it).
pub fn in_mode(pool: &str, mode: Detection) -> String {
    if mode == Detection::Count {
        return pool.to_string();
    }
    pool.lines()
        .map(|line| {
            let Some(n) = line
                .strip_prefix("max_failed_checks = ")
                .and_then(|n| n.trim().parse::<u64>().ok())
            else {
                return format!("{line}\n");
            };
            let d = down_for(n);
            let recheck = if d >= Duration::from_millis(500) {
                100
            } else {
                50
            };
            format!(
                "down_for = \"{}ms\"\nrecheck_interval = \"{recheck}ms\"\n",
                d.as_millis()
            )
        })
        .collect()
}

/// Milliseconds since the Unix epoch, as deadpool records times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Running, as opposed to gone or a zombie nobody reaped.
pub fn is_running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub fn wait_for(path: &Path, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}
pub mod deb;
pub mod golden;
pub mod lab;

/// A pool's text confirming outages by time, slowly, whatever the mode of this test: its line
/// `max_failed_checks = N` becomes `down_for = "1h"` re-checked every 100 ms. A test looks at
/// the reports while a tick re-checks (see [`Instance::rechecking`]), and the outage ends
/// long before it could be confirmed.
pub fn confirming_for_an_hour(pool: &str) -> String {
    pool.lines()
        .map(|line| match line.strip_prefix("max_failed_checks = ") {
            Some(_) => "down_for = \"1h\"\nrecheck_interval = \"100ms\"\n".to_string(),
            None => format!("{line}\n"),
        })
        .collect()
}

/// A tick left running while it re-checks failed active servers (pools with `down_for`), for
/// a test to look at what reports show meanwhile. Ending it (or dropping it, when a test
/// fails) brings the servers back, and the tick ends without a failover.
pub struct Rechecking<'a> {
    inst: &'a Instance,
    hosts: Vec<String>,
    tick: Option<std::process::Child>,
}

impl Instance {
    /// Makes `hosts` fail (`down-HOST` flags) and starts a tick in the background; returns
    /// once `until` holds (within 30 s), say when the pools have recorded re-checks. Their
    /// `down_for` must outlast what the test does meanwhile ([`confirming_for_an_hour`]).
    pub fn rechecking(&self, hosts: &[&str], until: impl Fn(&Instance) -> bool) -> Rechecking<'_> {
        for host in hosts {
            self.flag(&format!("down-{host}"));
        }
        let tick = self
            .command(&["tick"])
            .spawn()
            .expect("start deadpool tick");
        let rechecking = Rechecking {
            inst: self,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            tick: Some(tick),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !until(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "the re-checking tick never got there"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        rechecking
    }
}

impl Rechecking<'_> {
    /// Brings the servers back and waits for the tick to end: its result.
    pub fn end(mut self) -> Run {
        self.back();
        let tick = self.tick.take().expect("a running tick");
        Run::from(tick.wait_with_output().expect("wait for the tick"))
    }

    fn back(&self) {
        for host in &self.hosts {
            self.inst.unflag(&format!("down-{host}"));
        }
    }
}

impl Drop for Rechecking<'_> {
    fn drop(&mut self) {
        self.back();
        if let Some(mut tick) = self.tick.take() {
            let _ = tick.wait();
        }
    }
}

/// A real sshd on 127.0.0.1 for one test, outside the lab: its own host key, a client key it
/// accepts, and a known_hosts file naming it. Needs openssh-server installed. Killed when
/// dropped.
pub struct Sshd {
    child: std::process::Child,
    pub port: u16,
    /// The client's private key, which this sshd accepts for root.
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

impl Sshd {
    /// Starts it with its files in `dir` (created) and waits until it accepts connections.
    pub fn start(dir: &Path) -> Sshd {
        fs::create_dir_all(dir).unwrap();
        let keygen = |name: &str| {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .stdin(Stdio::null())
                .output()
                .expect("ssh-keygen (openssh-client) must be installed");
            assert!(out.status.success(), "ssh-keygen: {out:?}");
        };
        keygen("host_key");
        keygen("client_key");
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAuthorizedKeysFile {}\nLogLevel ERROR\n",
                dir.join("host_key").display(),
                dir.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let host_key = fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let known_hosts = dir.join("known_hosts");
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .unwrap();
        let log = fs::File::create(dir.join("sshd.log")).unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd (openssh-server) must be installed at /usr/sbin/sshd");
        let started = std::time::Instant::now();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let log = || fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sshd exited ({status}): {}", log());
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sshd did not listen on port {port} within 10 s: {}", log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            child,
            port,
            key: dir.join("client_key"),
            known_hosts,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
