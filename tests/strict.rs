//! StrictModes for the files deadpool trusts as root: a state dir, lock, database, plugin,
//! plugin dir or secret that others could change or redirect is refused with a message that
//! names the path and what to do, and nothing is changed.

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Instance, Run};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

both_modes!(an_open_state_dir_is_refused_at_tick_time);
fn an_open_state_dir_is_refused_at_tick_time() {
    let inst = Instance::new();
    assert_eq!(inst.tick().code, 0);
    chmod(&inst.path("state"), 0o777);
    let r = inst.tick();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("state dir") && r.stderr.contains("chmod go-w"),
        "{r:?}"
    );
    chmod(&inst.path("state"), 0o700);
    assert_eq!(inst.tick().code, 0);
}

both_modes!(a_lock_or_database_that_is_a_link_is_never_followed);
fn a_lock_or_database_that_is_a_link_is_never_followed() {
    for name in ["deadpool.lock", "deadpool.db"] {
        let inst = Instance::new();
        assert_eq!(inst.tick().code, 0);
        let victim = inst.path("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let planted = inst.path(&format!("state/{name}"));
        std::fs::remove_file(&planted).unwrap();
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let r = inst.tick();
        assert_eq!(r.code, 1, "{name}: {r:?}");
        assert!(r.stderr.contains("symbolic link"), "{name}: {r:?}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious\n",
            "{name}"
        );
    }
}

both_modes!(writable_plugins_and_plugin_dirs_are_refused);
fn writable_plugins_and_plugin_dirs_are_refused() {
    let inst = Instance::new();
    chmod(&inst.path("plugins/step"), 0o775);
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("plugins/step") && r.stderr.contains("chmod go-w"),
        "{r:?}"
    );
    // Nothing ran: no tick either.
    assert_eq!(inst.tick().code, 2);
    assert!(!inst.path("state").exists());

    chmod(&inst.path("plugins/step"), 0o755);
    chmod(&inst.path("plugins"), 0o777);
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("plugins is writable by group or others"),
        "{r:?}"
    );
}

both_modes!(secrets_must_be_private_files_of_their_owner);
fn secrets_must_be_private_files_of_their_owner() {
    let pool = |file: &str| {
        format!(
            "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"redis\"\npassword_file = \"{file}\"\n"
        )
    };
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool("pw"))]);
    inst.write("real-pw", "hunter2\n");
    chmod(&inst.path("real-pw"), 0o600);
    std::os::unix::fs::symlink(inst.path("real-pw"), inst.path("pw")).unwrap();
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pw is a symbolic link"), "{r:?}");

    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool("pw"))]);
    inst.write("pw", "hunter2\n");
    chmod(&inst.path("pw"), 0o600);
    assert_eq!(inst.run(&["check-config", "--offline"]).code, 0);
    // Owned by someone else (nobody): they could change it.
    let chown = std::process::Command::new("chown")
        .args(["nobody"])
        .arg(inst.path("pw"))
        .status()
        .unwrap();
    assert!(chown.success());
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("is owned by uid"), "{r:?}");
    assert!(!r.stderr.contains("hunter2"), "{r:?}");
}

both_modes!(plugin_secrets_are_masked_in_plans_and_reach_the_plugin);
fn plugin_secrets_are_masked_in_plans_and_reach_the_plugin() {
    let pool = format!(
        "{}password = \"hunter2\"\napi_token_file = \"token\"\nregion = \"eu\"\n",
        common::TWO_STEP_POOL.replace("max_failed_checks = 3", "max_failed_checks = 1")
    );
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool)]);
    inst.write("token", "t0ken-value\n");
    chmod(&inst.path("token"), 0o600);
    inst.script(
        "plugins/step",
        "#!/bin/sh\nenv | grep DEADPOOL_OPT_ | sort >> \"$(dirname \"$0\")/../env.log\"\necho ok\n",
    );
    let plan = inst.run(&["tick", "--dry-run"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("DEADPOOL_OPT_PASSWORD='<secret>'"),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("DEADPOOL_OPT_API_TOKEN='<secret>'"),
        "{plan:?}"
    );
    assert!(plan.stdout.contains("DEADPOOL_OPT_REGION=eu"), "{plan:?}");
    for out in [&plan.stdout, &plan.stderr] {
        assert!(
            !out.contains("hunter2") && !out.contains("t0ken-value"),
            "{plan:?}"
        );
    }
    inst.flag("down-db1");
    let r = inst.tick();
    assert_eq!(r.code, 0, "{r:?}");
    // The chain ran (counting to 1, or confirmed by the tick's re-checks with `down_for`):
    // its history and the report below must not hold the secrets either.
    assert_eq!(inst.state_of("db").0, "failed_over", "{r:?}");
    let env = std::fs::read_to_string(inst.path("env.log")).unwrap();
    assert!(
        env.contains("DEADPOOL_OPT_PASSWORD=hunter2")
            && env.contains("DEADPOOL_OPT_API_TOKEN=t0ken-value"),
        "{env}"
    );
    for text in [inst.history(), inst.run(&["report", "--json"]).stdout] {
        assert!(
            !text.contains("hunter2") && !text.contains("t0ken-value"),
            "{text}"
        );
    }
}

fn chown_nobody(path: &std::path::Path) {
    let status = std::process::Command::new("chown")
        .arg("nobody")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A pool whose one step runs `test` on `local` as its readiness check.
fn local_exec_pool(test: &str, shell: bool) -> String {
    format!(
        "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"nagios\"\ncommand = \"monitor {{host}}\"\n[[protocol]]\ntype = \"exec\"\nhosts = [\"local\"]\nshell = {shell}\ntest_command = {test:?}\nexec_command = \"true\"\n"
    )
}

both_modes!(local_exec_programs_and_every_directory_above_them_must_be_trusted);
fn local_exec_programs_and_every_directory_above_them_must_be_trusted() {
    let inst = Instance::new();
    std::fs::create_dir_all(inst.path("sub/bin")).unwrap();
    let prog = inst.path("sub/bin/prog");
    inst.script(
        "sub/bin/prog",
        &format!("#!/bin/sh\ntouch {}\n", inst.path("ran").display()),
    );
    let p = prog.display().to_string();
    let path_var = format!("{}:/usr/bin:/bin", inst.path("sub/bin").display());
    let refused = |test: &str, shell: bool, words: &[&str]| {
        inst.write_pool("db", &local_exec_pool(test, shell));
        for args in [
            &["check-config", "--offline"][..],
            &["tick"],
            &["tick", "--dry-run"],
        ] {
            let r = Run::from(inst.command(args).env("PATH", &path_var).output().unwrap());
            assert_eq!(r.code, 2, "{test} {args:?}: {r:?}");
            for w in words {
                assert!(r.stderr.contains(w), "{test} {args:?}: {w}: {r:?}");
            }
            assert!(!inst.path("ran").exists(), "{test} {args:?}: it ran");
            assert!(!inst.path("state").exists(), "{test} {args:?}");
        }
    };

    // A program others may change, by path, bare name (found through PATH) or first word of
    // a shell line.
    chmod(&prog, 0o777);
    chown_nobody(&prog);
    let owner = [p.as_str(), "owned by uid 65534", &format!("chown root {p}")];
    refused(&p, false, &owner);
    refused("prog --flag", false, &owner);
    refused(&format!("LC_ALL=C {p} x && echo done"), true, &owner);
    let root = std::process::Command::new("chown")
        .args(["root"])
        .arg(&prog)
        .status()
        .unwrap();
    assert!(root.success());
    refused(&p, false, &[p.as_str(), "mode 777", "chmod go-w"]);
    chmod(&prog, 0o755);
    // Its directory, and every directory above it.
    let bin = inst.path("sub/bin").display().to_string();
    chmod(&inst.path("sub/bin"), 0o777);
    refused(&p, false, &[&format!("{bin} is writable"), "chmod go-w"]);
    chmod(&inst.path("sub/bin"), 0o755);
    let sub = inst.path("sub").display().to_string();
    chmod(&inst.path("sub"), 0o757);
    refused(&p, false, &[&format!("{sub} is writable"), "chmod go-w"]);
    // A directory of PATH searched before the one that holds the program: whatever is
    // planted there runs instead.
    refused("true", false, &[&format!("{sub}/bin"), "$PATH", "`true`"]);
    chmod(&inst.path("sub"), 0o755);

    // All trusted: it runs.
    for (test, shell) in [(p.as_str(), false), ("prog", false), ("cd / && prog", true)] {
        std::fs::remove_file(inst.path("ran")).ok();
        std::fs::remove_dir_all(inst.path("state")).ok();
        inst.write_pool("db", &local_exec_pool(test, shell));
        let r = Run::from(
            inst.command(&["tick"])
                .env("PATH", &path_var)
                .output()
                .unwrap(),
        );
        assert_eq!(r.code, 0, "{test}: {r:?}");
        assert!(inst.path("ran").exists(), "{test}: {r:?}");
    }
    // A shell line's first word that no directory of PATH holds is the shell's own (`cd`).
    assert!(!inst.path("sub/bin/cd").exists());
}

both_modes!(an_identity_file_others_could_swap_is_refused_by_every_command);
fn an_identity_file_others_could_swap_is_refused_by_every_command() {
    let pool = format!(
        "{}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"app1\"]\nexec_command = \"true\"\n",
        common::TWO_STEP_POOL
    );
    let inst = Instance::with(
        "tick_interval = \"1s\"\n[ssh]\nidentity_file = \"key\"\nconnect_timeout = \"1s\"\n",
        &[("db", &pool)],
    );
    inst.write("key", "not really a key\n");
    let key = inst.path("key");
    let k = key.display().to_string();
    chmod(&key, 0o644);
    chown_nobody(&key);
    let refused = |words: &[&str]| {
        for args in [
            &["tick"][..],
            &["tick", "--dry-run"],
            &["promote", "db", "secondary", "--yes"],
            &["reset", "db", "--yes"],
            &["check-config", "--offline"],
        ] {
            let r = inst.run(args);
            assert_eq!(r.code, 2, "{args:?}: {r:?}");
            assert!(r.stderr.contains("identity_file"), "{args:?}: {r:?}");
            for w in words {
                assert!(r.stderr.contains(w), "{args:?}: {w}: {r:?}");
            }
            assert!(!inst.path("state").exists(), "{args:?}");
            assert!(inst.calls("preflight").is_empty(), "{args:?}");
        }
    };
    refused(&[&k, "owned by uid 65534", &format!("chown root {k}")]);
    let root = std::process::Command::new("chown")
        .arg("root")
        .arg(&key)
        .status()
        .unwrap();
    assert!(root.success());
    refused(&[&k, "readable by group or others (mode 644)", "chmod 600"]);
    chmod(&key, 0o600);
    inst.write("known_hosts", "");
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
}

both_modes!(config_files_and_dirs_others_could_change_are_refused);
fn config_files_and_dirs_others_could_change_are_refused() {
    let inst = Instance::new();
    let refused = |what: &str, words: &[&str]| {
        for args in [&["check-config", "--offline"][..], &["tick"], &["report"]] {
            let r = inst.run(args);
            assert_eq!(r.code, 2, "{what} {args:?}: {r:?}");
            for w in words {
                assert!(r.stderr.contains(w), "{what} {args:?}: {w}: {r:?}");
            }
            assert!(!inst.path("state").exists(), "{what} {args:?}");
        }
        assert!(inst.calls("preflight").is_empty(), "{what}");
    };
    let show = |rel: &str| inst.path(rel).display().to_string();
    for (rel, mode) in [
        ("", 0o777),
        ("pools", 0o777),
        ("pools/db.toml", 0o666),
        ("deadpool.toml", 0o646),
    ] {
        let path = if rel.is_empty() {
            inst.dir().to_path_buf()
        } else {
            inst.path(rel)
        };
        let old = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        chmod(&path, mode);
        let p = path.display().to_string();
        refused(
            rel,
            &[&format!("{p} is writable"), &format!("chmod go-w {p}")],
        );
        chmod(&path, old);
    }
    chown_nobody(&inst.path("pools/db.toml"));
    refused(
        "owner",
        &[&show("pools/db.toml"), "owned by uid 65534", "chown root"],
    );
    std::fs::remove_file(inst.path("pools/db.toml")).unwrap();

    // A pool file that is a link: the file it leads to, and the directory that holds it.
    std::fs::create_dir(inst.path("elsewhere")).unwrap();
    inst.write_pool("../elsewhere/db", common::TWO_STEP_POOL);
    std::os::unix::fs::symlink(inst.path("elsewhere/db.toml"), inst.path("pools/db.toml")).unwrap();
    assert_eq!(inst.run(&["check-config", "--offline"]).code, 0);
    chmod(&inst.path("elsewhere"), 0o777);
    refused(
        "link",
        &[
            &show("pools/db.toml"),
            &format!("{} is writable", show("elsewhere")),
        ],
    );
    chmod(&inst.path("elsewhere"), 0o755);

    // Secrets: the same rule for the directory that holds them.
    let pool = "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"redis\"\npassword_file = \"secrets/pw\"\n";
    inst.write_pool("db", pool);
    std::fs::create_dir(inst.path("secrets")).unwrap();
    inst.write("secrets/pw", "hunter2\n");
    chmod(&inst.path("secrets/pw"), 0o600);
    assert_eq!(inst.run(&["check-config", "--offline"]).code, 0);
    chmod(&inst.path("secrets"), 0o733);
    refused(
        "secrets dir",
        &[&format!("{} is writable", show("secrets")), "chmod go-w"],
    );
}

both_modes!(a_known_hosts_file_others_could_change_is_refused_by_every_command);
fn a_known_hosts_file_others_could_change_is_refused_by_every_command() {
    let pool = format!(
        "{}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"app1\"]\nexec_command = \"true\"\n",
        common::TWO_STEP_POOL
    );
    let inst = Instance::with(
        "tick_interval = \"1s\"\n[ssh]\nidentity_file = \"key\"\nknown_hosts = \"ssh/known_hosts\"\nconnect_timeout = \"1s\"\n",
        &[("db", &pool)],
    );
    inst.write("key", "not really a key\n");
    chmod(&inst.path("key"), 0o600);
    std::fs::create_dir(inst.path("ssh")).unwrap();
    inst.write(
        "ssh/known_hosts",
        "app1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
    );
    let file = inst.path("ssh/known_hosts");
    let f = file.display().to_string();
    let refused = |words: &[&str]| {
        for args in [
            &["tick"][..],
            &["tick", "--dry-run"],
            &["promote", "db", "secondary", "--yes"],
            &["reset", "db", "--yes"],
            &["check-config", "--offline"],
        ] {
            let r = inst.run(args);
            assert_eq!(r.code, 2, "{args:?}: {r:?}");
            assert!(r.stderr.contains("known_hosts"), "{args:?}: {r:?}");
            for w in words {
                assert!(r.stderr.contains(w), "{args:?}: {w}: {r:?}");
            }
            assert!(!inst.path("state").exists(), "{args:?}");
            assert!(inst.calls("preflight").is_empty(), "{args:?}");
        }
    };
    chmod(&file, 0o664);
    refused(&[
        &f,
        "writable by group or others (mode 664)",
        &format!("chmod go-w {f}"),
    ]);
    chmod(&file, 0o644);
    chown_nobody(&file);
    refused(&[&f, "owned by uid 65534", &format!("chown root {f}")]);
    let root = std::process::Command::new("chown")
        .arg("root")
        .arg(&file)
        .status()
        .unwrap();
    assert!(root.success());
    // The directories above it count too.
    chmod(&inst.path("ssh"), 0o777);
    let dir = inst.path("ssh").display().to_string();
    refused(&[&format!("{dir} is writable"), &format!("chmod go-w {dir}")]);
    chmod(&inst.path("ssh"), 0o755);
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
}

both_modes!(a_lock_or_database_with_other_hard_links_is_never_written);
fn a_lock_or_database_with_other_hard_links_is_never_written() {
    for name in ["deadpool.lock", "deadpool.db"] {
        let inst = Instance::new();
        assert_eq!(inst.tick().code, 0);
        let planted = inst.path(&format!("state/{name}"));
        // Another name of the same file, elsewhere: a copy of it, so that a database write
        // would succeed.
        let victim = inst.path("victim");
        std::fs::copy(&planted, &victim).unwrap();
        let before = std::fs::read(&victim).unwrap();
        std::fs::remove_file(&planted).unwrap();
        std::fs::hard_link(&victim, &planted).unwrap();
        inst.flag("down-db1");
        let r = inst.tick();
        assert_eq!(r.code, 1, "{name}: {r:?}");
        let p = planted.display().to_string();
        assert!(
            r.stderr.contains(&format!("{p} has 2 hard links"))
                && r.stderr.contains("find / -xdev -samefile"),
            "{name}: {r:?}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), before, "{name}");
    }
}

both_modes!(reports_and_dry_runs_never_read_a_database_through_a_link);
fn reports_and_dry_runs_never_read_a_database_through_a_link() {
    let other = Instance::new();
    other.flag("down-db1");
    for _ in 0..4 {
        assert_eq!(other.tick().code, 0);
    }
    assert_eq!(other.state_of("db").0, "failed_over");
    let inst = Instance::new();
    assert_eq!(inst.tick().code, 0);
    let db = inst.path("state/deadpool.db");
    for (symbolic, words) in [(true, "is a symbolic link"), (false, "has 2 hard links")] {
        std::fs::remove_file(&db).unwrap();
        let target = other.path("state/deadpool.db");
        if symbolic {
            std::os::unix::fs::symlink(&target, &db).unwrap();
        } else {
            std::fs::hard_link(&target, &db).unwrap();
        }
        for args in [
            &["report"][..],
            &["report", "--json"],
            &["history"],
            &["tick", "--dry-run"],
        ] {
            let r = inst.run(args);
            assert_eq!(r.code, 1, "{words} {args:?}: {r:?}");
            assert!(r.stderr.contains(words), "{words} {args:?}: {r:?}");
            assert!(!r.stdout.contains("failed_over"), "{words} {args:?}: {r:?}");
        }
    }
}

/// Runs deadpool with `args`, killing it after 10 s: `None` when it had to be killed.
fn run_within(inst: &Instance, args: &[&str]) -> Option<Run> {
    let mut child = inst.command(args).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(Run::from(child.wait_with_output().unwrap()))
}

both_modes!(a_fifo_a_device_or_a_huge_file_as_config_is_refused_at_once);
fn a_fifo_a_device_or_a_huge_file_as_config_is_refused_at_once() {
    let inst = Instance::new();
    let refused = |what: &str, words: &[&str]| {
        for args in [&["tick"][..], &["report"], &["check-config", "--offline"]] {
            let r = run_within(&inst, args)
                .unwrap_or_else(|| panic!("{what} {args:?}: still running after 10 s"));
            assert_eq!(r.code, 2, "{what} {args:?}: {r:?}");
            for w in words {
                assert!(r.stderr.contains(w), "{what} {args:?}: {w}: {r:?}");
            }
            assert!(!inst.path("state").exists(), "{what} {args:?}");
        }
    };
    let mkfifo = |path: &std::path::Path| {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    };
    let pool = inst.path("pools/db.toml");
    let p = pool.display().to_string();
    let text = std::fs::read_to_string(&pool).unwrap();

    std::fs::remove_file(&pool).unwrap();
    mkfifo(&pool);
    refused("fifo", &[&format!("{p} is a FIFO, not a regular file")]);
    std::fs::remove_file(&pool).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &pool).unwrap();
    refused(
        "/dev/zero",
        &[&format!("{p} is a device, not a regular file")],
    );
    std::fs::remove_file(&pool).unwrap();

    // A regular file is read up to 1 MiB: a comment makes this one a byte longer.
    let padding = (1 << 20) + 1 - text.len() - 2;
    inst.write(
        "pools/db.toml",
        &format!("{text}#{}\n", "x".repeat(padding)),
    );
    assert_eq!(std::fs::metadata(&pool).unwrap().len(), (1 << 20) + 1);
    refused(
        "huge",
        &[&format!(
            "{p} is 1048577 bytes, more than the 1048576 bytes (1 MiB)"
        )],
    );
    inst.write(
        "pools/db.toml",
        &format!("{text}#{}\n", "x".repeat(padding - 1)),
    );
    assert_eq!(inst.run(&["check-config", "--offline"]).code, 0);

    let main = inst.path("deadpool.toml");
    let m = main.display().to_string();
    std::fs::rename(&main, inst.path("saved.toml")).unwrap();
    mkfifo(&main);
    refused("fifo", &[&format!("{m} is a FIFO")]);
    std::fs::remove_file(&main).unwrap();
    std::fs::rename(inst.path("saved.toml"), &main).unwrap();

    // A secret is held to the same limit.
    inst.write_pool(
        "db",
        "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"redis\"\npassword_file = \"pw\"\n",
    );
    inst.write("pw", &"x".repeat((1 << 20) + 1));
    chmod(&inst.path("pw"), 0o600);
    refused("huge secret", &["pw is 1048577 bytes"]);
}
