//! `deadpool hosts`: the client-side helper, on real files.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{BIN, Run};

fn hosts(args: &[&str]) -> Run {
    Run::from(Command::new(BIN).arg("hosts").args(args).output().unwrap())
}

#[test]
fn switch_verify_and_test_on_a_real_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("hosts");
    let original =
        "127.0.0.1\tlocalhost\r\n10.0.0.11 db.internal db   # primary\r\n10.0.0.5 mydb\r\n";
    std::fs::write(&file, original).unwrap();
    let f = file.to_str().unwrap();
    let inode = std::fs::metadata(&file).unwrap().ino();

    let r = hosts(&["test", "--name", "db", "--file", f]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("OK - ") && r.stdout.contains("db -> 10.0.0.11"),
        "{r:?}"
    );
    assert_eq!(r.stdout.lines().count(), 1);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "test changes nothing"
    );

    let r = hosts(&["verify", "--name", "db", "--ip", "10.0.0.12", "--file", f]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("ERROR - db -> 10.0.0.11"), "{r:?}");

    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.12", "--file", f]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("(was 10.0.0.11)"), "{r:?}");
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        "127.0.0.1\tlocalhost\r\n10.0.0.11 db.internal   # primary\r\n10.0.0.5 mydb\r\n10.0.0.12\tdb\r\n"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "written in place"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("hosts.deadpool-backup")).unwrap(),
        original
    );
    assert_eq!(
        hosts(&["verify", "--name", "db", "--ip", "10.0.0.12", "--file", f]).code,
        0
    );

    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.12", "--file", f]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("nothing changed"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);
}

#[test]
fn bad_input_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("hosts");
    let f = file.to_str().unwrap();
    let binary = b"10.0.0.11 db\n\0\xff\xfe".to_vec();
    std::fs::write(&file, &binary).unwrap();
    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.12", "--file", f]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("ERROR - ") && r.stdout.contains("not text"),
        "{r:?}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), binary);

    std::fs::write(&file, "10.0.0.11 db\n").unwrap();
    for name in ["db;reboot", "$(id)", "-rf", "a b"] {
        let arg = format!("--name={name}");
        let r = hosts(&["switch", &arg, "--ip", "10.0.0.12", "--file", f]);

        assert_eq!(r.code, 1, "{name}: {r:?}");
        assert!(r.stdout.contains("not a valid host name"), "{r:?}");
    }
    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.300", "--file", f]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "10.0.0.11 db\n");
    assert!(!tmp.path().join("hosts.deadpool-backup").exists());

    let huge = "10.0.0.1 filler\n".repeat(300_000);
    std::fs::write(&file, &huge).unwrap();
    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.12", "--file", f]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("more than a hosts file should be"),
        "{r:?}"
    );

    let r = hosts(&["test", "--name", "db", "--file", "/nonexistent/hosts"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .starts_with("ERROR - cannot read /nonexistent/hosts"),
        "{r:?}"
    );
}

#[test]
fn test_reports_an_unwritable_file_for_an_unprivileged_user() {
    // Root may write anything; run the helper as `nobody` to meet a real permission refusal.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin = tmp.path().join("deadpool");
    std::fs::copy(BIN, &bin).unwrap();
    let file = tmp.path().join("hosts");
    std::fs::write(&file, "10.0.0.11 db\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .args(["hosts", "test", "--name", "db", "--file"])
        .arg(&file)
        .output()
        .expect("runuser (util-linux) must be installed");
    let r = Run::from(out);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("ERROR - ") && r.stdout.contains("is not writable by"),
        "{r:?}"
    );
    assert!(r.stdout.contains("db -> 10.0.0.11"), "{r:?}");
}

/// `test` answers for what `switch` will write: the hosts file and its backup next to it. A
/// hosts file writable on its own (a service allowed to write only /etc/hosts under a
/// read-only /etc) is not enough.
#[test]
fn test_reports_a_backup_that_cannot_be_written() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let bin = tmp.path().join("deadpool");
    std::fs::copy(BIN, &bin).unwrap();
    let file = tmp.path().join("hosts");
    std::fs::write(&file, "10.0.0.11 db\n").unwrap();
    // Writable by `nobody`, in a directory only root may create files in.
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o666)).unwrap();
    let backup = tmp.path().join("hosts.deadpool-backup");
    let as_nobody = || {
        let out = Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&bin)
            .args(["hosts", "test", "--name", "db", "--file"])
            .arg(&file)
            .output()
            .expect("runuser (util-linux) must be installed");
        Run::from(out)
    };
    let r = as_nobody();
    assert_eq!(r.code, 1, "a missing backup nobody may create: {r:?}");
    assert!(
        r.stdout.starts_with(&format!(
            "ERROR - the backup {} is not writable by",
            backup.display()
        )) && r.stdout.contains("Permission denied")
            && r.stdout.contains("db -> 10.0.0.11"),
        "{r:?}"
    );
    assert!(!backup.exists(), "test creates nothing");

    std::fs::write(&backup, "old\n").unwrap();
    std::fs::set_permissions(&backup, PermissionsExt::from_mode(0o644)).unwrap();
    let r = as_nobody();
    assert_eq!(r.code, 1, "an existing backup only root may write: {r:?}");
    assert!(r.stdout.contains("is not writable by"), "{r:?}");

    std::fs::set_permissions(&backup, PermissionsExt::from_mode(0o666)).unwrap();
    let r = as_nobody();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("and its backup are writable by"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old\n");
}

#[test]
fn a_planted_backup_link_or_a_fifo_is_refused_and_nothing_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    let original = "127.0.0.1\tlocalhost\n10.0.0.1\tdb\n";
    std::fs::write(&file, original).unwrap();
    // A link where the backup goes: root must not write through it.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("hosts.deadpool-backup")).unwrap();
    let path = file.to_str().unwrap();
    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.2", "--file", path]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("ERROR - ") && r.stdout.contains("symbolic link"),
        "{r:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "nothing changed"
    );

    // A FIFO as the hosts file: refused at once, never a hang.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for action in [
        &["test", "--name", "db"][..],
        &["switch", "--name", "db", "--ip", "10.0.0.2"],
    ] {
        let mut args = action.to_vec();
        args.extend(["--file", fifo.to_str().unwrap()]);
        let started = std::time::Instant::now();
        let r = hosts(&args);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stdout.contains("not a regular file"), "{r:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "it blocked"
        );
    }
}

#[test]
fn a_hard_link_as_the_backup_or_the_hosts_file_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    let original = "127.0.0.1\tlocalhost\n10.0.0.1\tdb\n";
    std::fs::write(&file, original).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let path = file.to_str().unwrap();
    let backup = dir.path().join("hosts.deadpool-backup");
    std::fs::hard_link(&victim, &backup).unwrap();
    let r = hosts(&["switch", "--name", "db", "--ip", "10.0.0.2", "--file", path]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("ERROR - ")
            && r.stdout
                .contains(&format!("{} has 2 hard links", backup.display())),
        "{r:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    std::fs::remove_file(&backup).unwrap();

    // The hosts file itself with another name: `test` says so, `switch` changes nothing.
    let other = dir.path().join("other-name");
    std::fs::hard_link(&file, &other).unwrap();
    for action in [
        &["test", "--name", "db"][..],
        &["switch", "--name", "db", "--ip", "10.0.0.2"],
    ] {
        let mut args = action.to_vec();
        args.extend(["--file", path]);
        let r = hosts(&args);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stdout.contains("has 2 hard links"), "{r:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
        assert!(!backup.exists(), "{r:?}");
    }
}
