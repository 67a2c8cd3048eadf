//! The Prometheus metrics: what `report --prometheus` and the textfile hold, checked by
//! `promtool check metrics`; the textfile written atomically 0644 whatever the umask, and
//! scraped by a real node_exporter running as another user.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Instance};

fn instance() -> Instance {
    Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\nprometheus_textfile = \"textfile/deadpool.prom\"\n",
        &[
            ("db", common::TWO_STEP_POOL),
            ("cache", common::TWO_STEP_POOL),
        ],
    )
}

/// A tick run the way the unit runs it: with umask 0077.
fn tick_with_umask_077(inst: &Instance) -> i32 {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 077; exec \"$0\" --config \"$1\" tick", BIN])
        .arg(inst.dir())
        .env_remove("DEADPOOL_LOG")
        .env_remove("JOURNAL_STREAM")
        .env("USER", "tester");
    cmd.status().unwrap().code().unwrap_or(-1)
}

/// `promtool check metrics` on `text`: exit 0 and no lint message.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// The value of the sample `name_and_labels` (the whole text before the value).
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .unwrap_or_else(|| panic!("no {name_and_labels} in:\n{text}"))
        .parse()
        .unwrap()
}

both_modes!(the_textfile_is_0644_whatever_the_umask_and_holds_no_age);
fn the_textfile_is_0644_whatever_the_umask_and_holds_no_age() {
    let inst = instance();
    let dir = inst.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    // A file left by an older deadpool under the unit's umask: replaced, not kept 0600.
    std::fs::write(dir.join("deadpool.prom"), "old\n").unwrap();
    std::fs::set_permissions(
        dir.join("deadpool.prom"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // A symlink planted where the temporary file goes is never followed.
    let victim = inst.path("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("deadpool.prom.tmp")).unwrap();

    let before = common::now_ms() as f64 / 1000.0;
    assert_eq!(tick_with_umask_077(&inst), 0);
    let path = dir.join("deadpool.prom");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "readable by node_exporter's user");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["deadpool.prom"], "no temporary file left");

    let text = std::fs::read_to_string(&path).unwrap();
    promtool_accepts(&text);
    // An age computed when the file was written would look fresh forever once ticks stop:
    // the file has the tick's timestamp instead (alert on time() - it).
    assert!(!text.contains("deadpool_tick_age_seconds"), "{text}");
    let last = sample(&text, "deadpool_last_tick_timestamp_seconds");
    assert!(
        last >= before - 1.0 && last <= before + 30.0,
        "{last} vs {before}"
    );
    let build = format!(
        "deadpool_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert_eq!(sample(&text, "deadpool_failovers_total{pool=\"db\"}"), 0.0);
    assert!(
        text.contains("# TYPE deadpool_failovers_total counter\n"),
        "{text}"
    );
    assert_eq!(sample(&text, "deadpool_pool_paused{pool=\"db\"}"), 0.0);
}

both_modes!(report_metrics_pass_promtool_in_every_state);
fn report_metrics_pass_promtool_in_every_state() {
    let inst = instance();
    std::fs::create_dir(inst.path("textfile")).unwrap();
    inst.tick();
    let check = |what: &str| {
        let r = inst.run(&["report", "--prometheus"]);
        assert_eq!(r.code, 0, "{what}: {r:?}");
        promtool_accepts(&r.stdout);
        promtool_accepts(&std::fs::read_to_string(inst.path("textfile/deadpool.prom")).unwrap());
        r.stdout
    };
    let text = check("armed");
    assert!(
        text.contains("deadpool_tick_age_seconds "),
        "the report keeps its age"
    );
    let r = inst.run(&[
        "pause",
        "cache",
        "--for",
        "1h",
        "--reason",
        "a \"quoted\" reason with \\ backslash",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    inst.flag("down-db1");
    for _ in 0..3 {
        inst.tick();
    }
    let text = check("failed over and paused");
    assert_eq!(sample(&text, "deadpool_failovers_total{pool=\"db\"}"), 1.0);
    assert_eq!(sample(&text, "deadpool_pool_paused{pool=\"cache\"}"), 1.0);
    assert!(
        text.contains(
            "deadpool_pool_pause_info{pool=\"cache\",by=\"root\",reason=\"a \\\"quoted\\\" reason with \\\\ backslash\"} 1\n"
        ),
        "{text}"
    );
    let until = sample(
        &text,
        "deadpool_pool_paused_until_timestamp_seconds{pool=\"cache\"}",
    );
    let in_an_hour = common::now_ms() as f64 / 1000.0 + 3600.0;
    assert!((until - in_an_hour).abs() < 60.0, "{until}");
}

/// node_exporter, killed when the test ends.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

fn make_traversable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

both_modes!(node_exporter_running_as_another_user_scrapes_the_textfile);
fn node_exporter_running_as_another_user_scrapes_the_textfile() {
    let inst = instance();
    let dir = inst.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    make_traversable(inst.dir());
    make_traversable(&dir);
    inst.tick();
    inst.flag("down-db1");
    for _ in 0..3 {
        assert!(tick_with_umask_077(&inst) <= 1);
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // As Debian runs it, as an unprivileged user: only a 0644 file is readable.
    let child = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "prometheus-node-exporter",
            "--collector.disable-defaults",
            "--collector.textfile",
        ])
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "prometheus-node-exporter must be installed (Debian package prometheus-node-exporter)",
        );
    let _exporter = Exporter(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some(body) = scrape(port) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "node_exporter did not answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert_eq!(sample(&body, "node_textfile_scrape_error"), 0.0, "{body}");
    assert_eq!(sample(&body, "deadpool_failovers_total{pool=\"db\"}"), 1.0);
    assert_eq!(
        sample(
            &body,
            "deadpool_pool_state{pool=\"db\",state=\"failed_over\"}"
        ),
        1.0
    );
    assert!(
        body.contains("deadpool_last_tick_timestamp_seconds "),
        "{body}"
    );
    assert!(body.contains("deadpool_build_info{commit=\""), "{body}");
}
