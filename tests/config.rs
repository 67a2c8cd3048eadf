//! Configuration: every shipped example parses, `init` writes a config `check-config`
//! accepts, and each kind of bad config exits 2 naming file and key, changing nothing.

mod common;

use common::{BIN, Instance, TWO_STEP_POOL};

#[test]
fn every_shipped_example_config_is_valid() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    // --offline: the examples name documentation addresses, which must never be probed.
    let check = |dir: &std::path::Path| {
        let r = std::process::Command::new(BIN)
            .arg("--config")
            .arg(dir)
            .args(["check-config", "--offline"])
            .output()
            .unwrap();
        assert!(r.status.success(), "{r:?}");
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    assert!(check(&shipped).contains("OK - configuration is valid (1 pool(s)"));

    // The `.example` pools become real ones once renamed and given their password files.
    let tmp = tempfile::tempdir().unwrap();
    let mut examples = 0;
    for entry in walk(&shipped) {
        let rel = entry.strip_prefix(&shipped).unwrap();
        let target = tmp
            .path()
            .join(rel.to_string_lossy().trim_end_matches(".example"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
        examples += usize::from(rel.to_string_lossy().ends_with(".example"));
    }
    assert_eq!(examples, 3);
    std::fs::create_dir(tmp.path().join("secrets")).unwrap();
    std::fs::write(tmp.path().join("known_hosts"), "").unwrap();
    for name in [
        "secrets/mysql-monitor",
        "secrets/mysql-admin",
        "secrets/redis",
        "secrets/tsig",
        "id_ed25519",
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, "pw\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let out = check(tmp.path());
    assert!(
        out.contains("OK - configuration is valid (4 pool(s)"),
        "{out}"
    );
    assert!(out.contains("pool orders_mysql: mysql monitor"), "{out}");
    assert!(out.contains("pool orders_dns_lb: step `point orders-db at it` (dns): orders-db.internal.example. A at 192.0.2.53:53"), "{out}");
    assert!(
        out.contains(
            "pool orders_dns_lb: step `switch the load balancers` (haproxy): backend orders_mysql"
        ),
        "{out}"
    );

    // Every TOML file under config/ was read by one of these runs.
    let tomls: Vec<_> = walk(&shipped)
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().ends_with(".toml") || p.to_string_lossy().ends_with(".toml.example")
        })
        .collect();
    assert_eq!(tomls.len(), 5, "{tomls:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn init_writes_a_config_check_config_accepts_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    let run = |args: &[&str]| {
        common::Run::from(
            std::process::Command::new(BIN)
                .arg("--config")
                .arg(&dir)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let r = run(&["init"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Next steps"), "{r:?}");
    let r = run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
    // The only things missing are files the user must supply, and they are named.
    assert!(
        r.stdout.contains("id_ed25519 does not exist"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("known_hosts does not exist"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("worst-case tick duration"),
        "{}",
        r.stdout
    );

    let pool = dir.join("pools/example_db.toml");
    std::fs::write(&pool, "changed").unwrap();
    let r = run(&["init"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--force"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&pool).unwrap(), "changed");
    let r = run(&["init", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_ne!(std::fs::read_to_string(&pool).unwrap(), "changed");
}

/// Each bad config: (what to write where, words the error must contain).
fn bad_configs() -> Vec<(&'static str, String, String, Vec<&'static str>)> {
    let pool = |from: &str, to: &str| TWO_STEP_POOL.replacen(from, to, 1);
    let main = "state_dir = \"state\"\ntick_interval = \"1s\"\n";
    vec![
        (
            "unknown key in deadpool.toml",
            "deadpool.toml".into(),
            format!("{main}tick_intervall = \"1s\"\n"),
            vec!["deadpool.toml", "tick_intervall", "line 3"],
        ),
        (
            "bad duration",
            "deadpool.toml".into(),
            "state_dir = \"state\"\ntick_interval = \"5 seconds\"\n".into(),
            vec!["deadpool.toml", "tick_interval", "\"5s\""],
        ),
        (
            "zero duration",
            "deadpool.toml".into(),
            "state_dir = \"state\"\ntick_interval = \"0s\"\n".into(),
            vec!["tick_interval", "longer than zero"],
        ),
        (
            "wrong type",
            "deadpool.toml".into(),
            "state_dir = \"state\"\ntick_interval = 5\n".into(),
            vec!["deadpool.toml", "tick_interval", "string"],
        ),
        (
            "unknown key in a pool",
            "pools/db.toml".into(),
            pool(
                "max_failed_checks = 3",
                "max_failed_checks = 3\nmax_failures = 2",
            ),
            vec!["pools/db.toml", "max_failures"],
        ),
        (
            "missing field",
            "pools/db.toml".into(),
            pool("secondary = \"db2\"", ""),
            vec!["pools/db.toml", "secondary"],
        ),
        (
            "max_failed_checks = 0",
            "pools/db.toml".into(),
            pool("max_failed_checks = 3", "max_failed_checks = 0"),
            vec!["pools/db.toml", "max_failed_checks", "at least 1"],
        ),
        (
            "primary equal to secondary",
            "pools/db.toml".into(),
            pool("secondary = \"db2\"", "secondary = \"db1\""),
            vec!["pools/db.toml", "secondary", "two different servers"],
        ),
        (
            "duplicate pool names",
            "pools/zz.toml".into(),
            format!("name = \"db\"\n{TWO_STEP_POOL}"),
            vec!["pools/zz.toml", "already used", "db.toml"],
        ),
        (
            "an unknown step type in a known place",
            "pools/db.toml".into(),
            pool("type = \"plugin\"", "type = \"haproxy_drain\""),
            vec![
                "pools/db.toml",
                "[[protocol]] 1",
                "line 11",
                "haproxy_drain",
                "expected one of",
            ],
        ),
        (
            "an unknown monitor type",
            "pools/db.toml".into(),
            pool("type = \"nagios\"", "type = \"memcached\""),
            vec!["pools/db.toml", "[monitor]", "memcached", "expected one of"],
        ),
        (
            "mysql monitor without a password file",
            "pools/db.toml".into(),
            pool(
                "type = \"nagios\"\ncommand = \"monitor {host}\"",
                "type = \"mysql\"",
            ),
            vec!["pools/db.toml", "[monitor]", "password_file"],
        ),
        (
            "a password file readable by others",
            "pools/db.toml".into(),
            pool(
                "type = \"nagios\"\ncommand = \"monitor {host}\"",
                "type = \"mysql\"\npassword_file = \"open-secret\"",
            ),
            vec![
                "pools/db.toml",
                "password_file",
                "open-secret",
                "readable by group or others",
                "chmod 600",
            ],
        ),
        (
            "mysql_promote with an unknown key",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"mysql_promote\"\nuser = \"a\"\npassword_file = \"secret\"\ncatchup = \"5s\"\n"
            ),
            vec![
                "pools/db.toml",
                "[[protocol]] 3",
                "catchup",
                "catch_up_timeout",
            ],
        ),
        (
            "unknown step type",
            "pools/db.toml".into(),
            pool("type = \"plugin\"", "type = \"pluggin\""),
            vec!["pools/db.toml", "pluggin", "expected one of"],
        ),
        (
            "unknown key in a step",
            "pools/db.toml".into(),
            pool(
                "type = \"nagios\"\ncommand = \"monitor {host}\"",
                "type = \"tcp\"\nport = 1\ncommand = \"x\"",
            ),
            vec![
                "pools/db.toml",
                "command",
                "does not apply to a `tcp` monitor",
            ],
        ),
        (
            "a host with shell metacharacters",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"app1;reboot\"]\nexec_command = \"true\"\n"
            ),
            vec![
                "pools/db.toml",
                "[[protocol]] 3",
                "hosts",
                "app1;reboot",
                "not a host name",
            ],
        ),
        (
            "etc_hosts with server names instead of addresses",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"etc_hosts\"\nservice_host_name = \"db.service\"\nclient_hosts = [\"app1\"]\n"
            ),
            vec!["pools/db.toml", "primary", "`db1`", "IP addresses"],
        ),
        (
            "vip without a prefix length",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"vip\"\naddress = \"10.0.0.100\"\ninterface = \"eth0\"\n"
            ),
            vec![
                "pools/db.toml",
                "[[protocol]] 3",
                "address",
                "prefix length",
            ],
        ),
        (
            "an unknown key in a step's ssh table",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"app1\"]\nexec_command = \"true\"\nssh = {{ usr = \"x\" }}\n"
            ),
            vec!["pools/db.toml", "[[protocol]] 3", "usr"],
        ),
        (
            "confirm_from on a monitor without a port",
            "pools/db.toml".into(),
            pool(
                "timeout = \"2s\"",
                "timeout = \"2s\"\nconfirm_from = [\"app1\"]",
            ),
            vec!["pools/db.toml", "[monitor]", "confirm_from", "port"],
        ),
        (
            "unknown exec key",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"local\"]\nexec_command = \"true\"\nexec_comand = \"x\"\n"
            ),
            vec!["pools/db.toml", "exec_comand"],
        ),
        (
            "unknown placeholder",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"local\"]\nexec_command = \"echo {{new_primry}}\"\n"
            ),
            vec!["pools/db.toml", "exec_command", "new_primry"],
        ),
        (
            "missing plugin",
            "pools/db.toml".into(),
            pool("command = \"step\"", "command = \"no_such_step\""),
            vec!["pools/db.toml", "command", "no_such_step", "not found"],
        ),
        (
            "syntax error",
            "pools/db.toml".into(),
            "primary = \"db1\nsecondary = 2".into(),
            vec!["pools/db.toml", "line 1"],
        ),
        (
            "bad on_failure",
            "pools/db.toml".into(),
            pool("color = \"blue\"", "on_failure = \"retry\""),
            vec!["pools/db.toml", "on_failure", "retry"],
        ),
        (
            "bad host",
            "pools/db.toml".into(),
            pool("primary = \"db1\"", "primary = \"db1;reboot\""),
            vec!["pools/db.toml", "primary", "db1;reboot"],
        ),
        (
            "unknown key in a dns step",
            "pools/db.toml".into(),
            dns_pool("tsig_keyname = \"k\"\n"),
            vec!["pools/db.toml", "[[protocol]] 3", "tsig_keyname"],
        ),
        (
            "the record name given as the step's name",
            "pools/db.toml".into(),
            dns_pool("").replace("service_host_name =", "name ="),
            vec!["pools/db.toml", "[[protocol]] 3", "service_host_name"],
        ),
        (
            "a TSIG secret readable by others",
            "pools/db.toml".into(),
            dns_pool("").replace("\"secret\"", "\"open-secret\""),
            vec!["pools/db.toml", "tsig_secret_file", "chmod 600"],
        ),
        (
            "dns values that are not addresses",
            "pools/db.toml".into(),
            dns_pool("").replace("values = ", "# "),
            vec![
                "pools/db.toml",
                "key `record`",
                "`db1` is not an IPv4 address",
            ],
        ),
        (
            "a dns name outside the zone",
            "pools/db.toml".into(),
            dns_pool("").replace("db.internal.example.", "db.elsewhere.example."),
            vec![
                "service_host_name",
                "not inside the zone `internal.example.`",
            ],
        ),
        (
            "a bad haproxy socket",
            "pools/db.toml".into(),
            haproxy_pool("sockets = [\"lb1\"]"),
            vec!["pools/db.toml", "[[protocol]] 3", "sockets", "`lb1`"],
        ),
        (
            "a second runtime API command in a backend name",
            "pools/db.toml".into(),
            haproxy_pool("sockets = [\"10.0.0.9:9999\"]").replace(
                "backend = \"mysql\"",
                "backend = \"mysql; disable frontend x\"",
            ),
            vec!["pools/db.toml", "backend", "expected an HAProxy name"],
        ),
    ]
}

fn dns_pool(extra: &str) -> String {
    format!(
        "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"dns\"\nserver = \"10.0.0.53\"\nzone = \"internal.example\"\nservice_host_name = \"db.internal.example.\"\nvalues = {{ primary = \"10.0.0.11\", secondary = \"10.0.0.12\" }}\ntsig_key = \"k\"\ntsig_secret_file = \"secret\"\n{extra}"
    )
}

fn haproxy_pool(sockets: &str) -> String {
    format!(
        "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"haproxy\"\nbackend = \"mysql\"\nservers = {{ primary = \"db1\", secondary = \"db2\" }}\n{sockets}\n"
    )
}

#[test]
fn each_bad_config_exits_2_naming_file_and_key_and_changes_nothing() {
    let inst = Instance::new();
    assert_eq!(inst.tick().code, 0);
    inst.write("open-secret", "hunter2\n");
    std::fs::set_permissions(
        inst.path("open-secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    inst.write("secret", "hunter2\n");
    std::fs::set_permissions(
        inst.path("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let good_main = std::fs::read_to_string(inst.path("deadpool.toml")).unwrap();

    let before = inst.db_bytes();
    assert!(!before.is_empty());
    for (what, file, text, words) in bad_configs() {
        let original = std::fs::read_to_string(inst.path(&file)).ok();
        inst.write(&file, &text);
        for args in [
            &["tick"][..],
            &["check-config"],
            &["promote", "db", "secondary", "--yes"],
            &["reset", "db", "--yes"],
        ] {
            let r = inst.run(args);
            assert_eq!(r.code, 2, "{what}: {args:?}: {r:?}");
            for word in &words {
                assert!(
                    r.stderr.contains(word),
                    "{what}: {args:?}: `{word}` missing from: {}",
                    r.stderr
                );
            }
            assert!(r.stdout.is_empty(), "{what}: {r:?}");
        }
        let nagios = inst.run(&["report", "--nagios"]);
        assert_eq!(nagios.code, 3, "{what}: {nagios:?}");
        assert!(
            nagios
                .stdout
                .starts_with("DEADPOOL UNKNOWN - invalid configuration"),
            "{what}: {nagios:?}"
        );
        assert_eq!(inst.db_bytes(), before, "{what}: the database changed");
        assert!(inst.calls("promote").is_empty(), "{what}");
        match original {
            Some(o) => inst.write(&file, &o),
            None => std::fs::remove_file(inst.path(&file)).unwrap(),
        }
    }
    assert_eq!(
        std::fs::read_to_string(inst.path("deadpool.toml")).unwrap(),
        good_main
    );
    assert_eq!(inst.tick().code, 0, "the restored config works again");
}

#[test]
fn bad_usage_exits_2() {
    let inst = Instance::new();
    for args in [
        &["frobnicate"][..],
        &["tick", "--bogus"],
        &["promote", "db", "tertiary"],
        &["report", "--full", "--json"],
    ] {
        let r = inst.run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(!r.stderr.is_empty());
    }
    let r = inst.run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("tick"));
}

#[test]
fn check_config_requires_the_ssh_files_that_steps_use() {
    let pool = format!(
        "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"app1\"]\nexec_command = \"true\"\n"
    );
    let inst = Instance::with(
        "tick_interval = \"1s\"\n[ssh]\nidentity_file = \"key\"\n",
        &[("db", &pool)],
    );
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("step `exec`: identity_file")
            && r.stderr.contains("ssh-keygen -t ed25519"),
        "{r:?}"
    );

    inst.write("key", "not really a key\n");
    std::fs::set_permissions(
        inst.path("key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("readable by group or others") && r.stderr.contains("chmod 600"),
        "{r:?}"
    );

    std::fs::set_permissions(
        inst.path("key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("known_hosts") && r.stderr.contains("ssh-keyscan"),
        "{r:?}"
    );

    inst.write("known_hosts", "");
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
}
