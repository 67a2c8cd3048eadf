//! Logging under journald: every line deadpool writes to stderr carries its priority
//! (`<3>` error .. `<7>` debug), fatal errors and usage errors included, and only when
//! stderr really is the stream `$JOURNAL_STREAM` names (device and inode, as systemd
//! documents it). Checked against a real systemd-journald, run in a private mount namespace
//! so that nothing of this machine's own logging is touched.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use common::{BIN, Instance};

/// Runs deadpool with stderr in a file and `JOURNAL_STREAM` set by `stream` from that
/// file's device and inode; returns (exit code, stderr).
fn with_stderr_file(
    inst: &Instance,
    args: &[&str],
    stream: impl Fn(u64, u64) -> String,
) -> (i32, String) {
    let path = inst.path("stderr.log");
    let file = fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DEADPOOL_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .env("JOURNAL_STREAM", stream(meta.dev(), meta.ino()));
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        fs::read_to_string(&path).unwrap(),
    )
}

both_modes!(prefixes_only_when_stderr_is_the_named_stream);
fn prefixes_only_when_stderr_is_the_named_stream() {
    let inst = Instance::new();
    let missing = ["--config", "/nonexistent/deadpool", "tick"];
    let (code, text) = with_stderr_file(&inst, &missing, |d, i| format!("{d}:{i}"));
    assert_eq!(code, 2);
    assert!(text.starts_with("<3>invalid configuration: "), "{text:?}");
    assert!(text.lines().all(|l| l.starts_with("<3>")), "{text:?}");

    // Inherited from a parent whose stderr was the journal, but ours is another file.
    let (code, text) = with_stderr_file(&inst, &missing, |d, i| format!("{d}:{}", i + 1));
    assert_eq!(code, 2);
    assert!(
        text.starts_with("deadpool: error: invalid configuration"),
        "{text:?}"
    );
    assert!(!text.contains("<3>"), "{text:?}");

    // Mere presence is not enough.
    let (_, text) = with_stderr_file(&inst, &missing, |_, _| "garbage".to_string());
    assert!(text.starts_with("deadpool: error: "), "{text:?}");

    // A usage error that clap formats on several lines: a priority on each.
    let dir = inst.dir().display().to_string();
    let bogus = ["--config", dir.as_str(), "tick", "--bogus"];
    let (code, text) = with_stderr_file(&inst, &bogus, |d, i| format!("{d}:{i}"));
    assert_eq!(code, 2);
    assert!(text.lines().count() > 1, "{text:?}");
    assert!(text.lines().all(|l| l.starts_with("<3>")), "{text:?}");
}

/// The script run inside a private mount namespace: a journald of its own (its sockets and
/// storage on tmpfs), deadpool run through systemd-cat the way a service's stderr is
/// connected, then the journal exported as JSON.
const JOURNAL_SCRIPT: &str = r#"
set -eu
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/journal
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
/lib/systemd/systemd-journald &
journald=$!
trap 'kill $journald 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
[ -S /run/systemd/journal/stdout ] || { echo "journald did not start" >&2; exit 1; }
# As systemd does for a service: JOURNAL_STREAM names the stream's device and inode.
run() {
    systemd-cat -t deadpool-test --level-prefix=true sh -c \
        'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@"' sh "$@" || true
}
run "$BIN" --config "$DIR" -vv tick
touch "$DIR/flags/down-db1"
for _ in 1 2 3; do run "$BIN" --config "$DIR" -vv tick; done
run "$BIN" --config /nonexistent/deadpool tick
run "$BIN" --config "$DIR" tick --bogus
sleep 0.5
journalctl --no-pager --sync >/dev/null 2>&1 || true
journalctl --no-pager -t deadpool-test -o json
echo "--- errors"
journalctl --no-pager -t deadpool-test -p err -o cat
"#;

both_modes!(priorities_reach_a_real_journald);
fn priorities_reach_a_real_journald() {
    let inst = Instance::new();
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            JOURNAL_SCRIPT,
        ])
        .env("BIN", BIN)
        .env("DIR", inst.dir())
        .env_remove("DEADPOOL_LOG")
        .env_remove("JOURNAL_STREAM")
        .env("USER", "tester")
        .output()
        .expect("unshare must be installed (Debian package util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a journald of its own needs root and systemd-journald (Debian package systemd): {stderr}"
    );
    let (json, errors) = stdout.split_once("--- errors\n").expect("both parts");
    let entries: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let field = |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or("").to_string();
    let messages: Vec<(String, String)> = entries
        .iter()
        .map(|e| (field(e, "PRIORITY"), field(e, "MESSAGE")))
        .collect();
    assert!(!messages.is_empty(), "{stderr}");
    // Every line was read with a priority: none is left in the text, and no line fell back
    // to the default priority with a `deadpool: LEVEL:` tag.
    for (priority, message) in &messages {
        assert!(!message.starts_with('<'), "unparsed prefix: {message:?}");
        assert!(!message.starts_with("deadpool: "), "no prefix: {message:?}");
        assert!(
            ["3", "4", "6", "7"].contains(&priority.as_str()),
            "{priority} {message}"
        );
    }
    let has = |p: &str, words: &str| {
        messages
            .iter()
            .any(|(priority, m)| priority == p && m.contains(words))
    };
    assert!(has("7", "round took"), "debug lines: {messages:?}");
    assert!(has("4", "failover started"), "warnings: {messages:?}");
    assert!(
        has("3", "invalid configuration"),
        "the fatal error: {messages:?}"
    );
    assert!(
        has("3", "--bogus"),
        "each line of a usage error: {messages:?}"
    );
    // What an operator filters for: `journalctl -p err` shows the fatal error.
    assert!(errors.contains("invalid configuration"), "{errors}");
    assert!(!errors.contains("round took"), "{errors}");
}
