//! Configuration: every shipped example parses, `init` writes a config `check-config`
//! accepts, and each kind of bad config exits 2 naming file and key, changing nothing.

#[macro_use]
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
    assert_eq!(examples, 4);
    std::fs::create_dir(tmp.path().join("secrets")).unwrap();
    std::fs::write(tmp.path().join("known_hosts"), "").unwrap();
    for name in [
        "secrets/mysql-monitor",
        "secrets/mysql-admin",
        "secrets/pg-monitor",
        "secrets/pg-admin",
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
        out.contains("OK - configuration is valid (5 pool(s)"),
        "{out}"
    );
    assert!(out.contains("pool orders_mysql: mysql monitor"), "{out}");
    assert!(
        out.contains("pool orders_postgres: postgres monitor"),
        "{out}"
    );
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
    assert_eq!(tomls.len(), 6, "{tomls:?}");
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

    // --force overwrites a file, never another file through a link to it.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    for symbolic in [true, false] {
        std::fs::remove_file(&pool).unwrap();
        if symbolic {
            std::os::unix::fs::symlink(&victim, &pool).unwrap();
        } else {
            std::fs::hard_link(&victim, &pool).unwrap();
        }
        let r = run(&["init", "--force"]);
        assert_eq!(r.code, 1, "{r:?}");
        let words = if symbolic {
            "symbolic link"
        } else {
            "2 hard links"
        };
        assert!(r.stderr.contains(words), "{r:?}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
}

/// One bad config: (what it is, the file written, its text, words the error must contain).
type BadConfig = (&'static str, String, String, Vec<&'static str>);

/// The test pool with its first `from` replaced by `to`.
fn pool(from: &str, to: &str) -> String {
    TWO_STEP_POOL.replacen(from, to, 1)
}

const MAIN: &str = "state_dir = \"state\"\ntick_interval = \"1s\"\n";

/// Each bad config, and the words its error must contain.
fn bad_configs() -> Vec<BadConfig> {
    let mut all = instance_and_pool_cases();
    all.extend(monitor_and_step_type_cases());
    all.extend(step_key_cases());
    all.extend(dns_and_haproxy_cases());
    all
}

/// Bad configs in the instance file and a pool's own keys.
fn instance_and_pool_cases() -> Vec<BadConfig> {
    vec![
        (
            "unknown key in deadpool.toml",
            "deadpool.toml".into(),
            format!("{MAIN}tick_intervall = \"1s\"\n"),
            vec!["deadpool.toml", "tick_intervall", "line 3"],
        ),
        (
            "bad duration",
            "deadpool.toml".into(),
            "state_dir = \"state\"\ntick_interval = \"5 secs\"\n".into(),
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
            "both max_failed_checks and down_for",
            "pools/db.toml".into(),
            pool(
                "max_failed_checks = 3",
                "max_failed_checks = 3\ndown_for = \"1.5s\"",
            ),
            vec!["pools/db.toml", "down_for", "not both"],
        ),
        (
            "recheck_interval without down_for",
            "pools/db.toml".into(),
            pool(
                "max_failed_checks = 3",
                "max_failed_checks = 3\nrecheck_interval = \"250ms\"",
            ),
            vec!["pools/db.toml", "recheck_interval", "set `down_for` too"],
        ),
        (
            "recheck_interval longer than down_for",
            "pools/db.toml".into(),
            pool(
                "max_failed_checks = 3",
                "down_for = \"1s\"\nrecheck_interval = \"2s\"",
            ),
            vec!["pools/db.toml", "recheck_interval", "at most `down_for`"],
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
    ]
}

/// Bad configs in the monitor, and a step's type and common keys.
fn monitor_and_step_type_cases() -> Vec<BadConfig> {
    vec![
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
    ]
}

/// Bad configs in steps' own keys.
fn step_key_cases() -> Vec<BadConfig> {
    vec![
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
            "a key of the postgres stop without fence = stop",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"postgres_promote\"\nuser = \"a\"\npassword_file = \"secret\"\ndata_dir = \"/var/lib/postgresql/15/main\"\n"
            ),
            vec![
                "pools/db.toml",
                "[[protocol]] 3",
                "data_dir",
                "set fence = \"stop\", or remove it",
            ],
        ),
        (
            "fence = stop without data_dir",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"postgres_promote\"\nuser = \"a\"\npassword_file = \"secret\"\nfence = \"stop\"\n"
            ),
            vec!["pools/db.toml", "[[protocol]] 3", "data_dir", "missing"],
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
            vec![
                "pools/db.toml",
                "exec_command",
                "`{new_primry}`",
                "the known ones are {new_primary}, {old_primary}, {pool}",
            ],
        ),
        (
            "unknown placeholder in a nagios monitor's command",
            "pools/db.toml".into(),
            pool(
                "command = \"monitor {host}\"",
                "command = \"monitor {hots}\"",
            ),
            vec![
                "pools/db.toml",
                "[monitor]",
                "command",
                "`{hots}`",
                "the known ones are {host}, {port}, {pool}, {role}",
            ],
        ),
        (
            "a placeholder in the wrong case",
            "pools/db.toml".into(),
            format!(
                "{TWO_STEP_POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"local\"]\nexec_command = \"echo {{POOL}}\"\n"
            ),
            vec!["pools/db.toml", "exec_command", "`{POOL}`", "{pool}"],
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
    ]
}

/// Bad configs in the dns and haproxy steps.
fn dns_and_haproxy_cases() -> Vec<BadConfig> {
    vec![
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

both_modes!(each_bad_config_exits_2_naming_file_and_key_and_changes_nothing);
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

both_modes!(bad_usage_exits_2);
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

both_modes!(check_config_requires_the_ssh_files_that_steps_use);
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

/// A CA, and a certificate with its key signed by it, written as PEM files into `dir`:
/// `ca.pem`, `client.pem`, `client.key` (0600), and `other.key` (a key of no certificate).
fn make_certificates(dir: &std::path::Path) {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509, X509NameBuilder};

    let key = || {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    };
    let cert = |cn: &str,
                key: &PKey<openssl::pkey::Private>,
                signer: Option<(&X509, &PKey<openssl::pkey::Private>)>| {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        match signer {
            Some((ca, ca_key)) => {
                b.set_issuer_name(ca.subject_name()).unwrap();
                b.sign(ca_key, MessageDigest::sha256()).unwrap();
            }
            None => {
                b.set_issuer_name(&name).unwrap();
                b.sign(key, MessageDigest::sha256()).unwrap();
            }
        }
        b.build()
    };
    let (ca_key, client_key) = (key(), key());
    let ca = cert("test CA", &ca_key, None);
    let client = cert("deadpool", &client_key, Some((&ca, &ca_key)));
    let write = |name: &str, bytes: Vec<u8>, mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    };
    write("ca.pem", ca.to_pem().unwrap(), 0o644);
    write("client.pem", client.to_pem().unwrap(), 0o644);
    write(
        "client.key",
        client_key.private_key_to_pem_pkcs8().unwrap(),
        0o600,
    );
    write(
        "other.key",
        key().private_key_to_pem_pkcs8().unwrap(),
        0o600,
    );
}

const TLS_POOL: &str = "primary = \"192.0.2.11\"\nsecondary = \"192.0.2.12\"\n\n[monitor]\ntype = \"TYPE\"\npassword_file = \"secret\"\nTLS\n\n[[protocol]]\ntype = \"STEP\"\nuser = \"dpadmin\"\npassword_file = \"secret\"\nSTEP_TLS\n";

/// A pool of `kind` (mysql or redis) with the given `tls` line on the monitor and on its
/// promoting step.
fn tls_pool(kind: &str, monitor_tls: &str, step_tls: &str) -> String {
    let pool = TLS_POOL
        .replace("STEP_TLS\n", &format!("{step_tls}\n"))
        .replace("TLS\n", &format!("{monitor_tls}\n"))
        .replace("TYPE", kind)
        .replace("STEP", &format!("{kind}_promote"));
    if kind == "redis" {
        pool.replace("user = \"dpadmin\"\n", "")
    } else {
        pool
    }
}

both_modes!(tls_tables_are_checked_with_every_error_naming_file_key_and_remedy);
fn tls_tables_are_checked_with_every_error_naming_file_key_and_remedy() {
    let inst = Instance::with("tick_interval = \"1s\"\n", &[]);
    write_tls_files(&inst);
    for (what, pool, words) in bad_tls_tables() {
        inst.write("pools/db.toml", &pool);
        let r = inst.run(&["check-config", "--offline"]);
        assert_eq!(r.code, 2, "{what}: {r:?}");
        for word in words.iter().chain(&["pools/db.toml"]) {
            assert!(
                r.stderr.contains(word),
                "{what}: `{word}` missing from: {}",
                r.stderr
            );
        }
    }
    valid_tls_tables_are_summarised(&inst);
}

/// The certificates, and files of each kind a `tls` table may name wrongly.
fn write_tls_files(inst: &Instance) {
    make_certificates(inst.dir());
    inst.write("secret", "pw\n");
    std::fs::set_permissions(
        inst.path("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    inst.write("not-a-cert.pem", "hello\n");
    inst.write(
        "open-ca.pem",
        &std::fs::read_to_string(inst.path("ca.pem")).unwrap(),
    );
    std::fs::set_permissions(
        inst.path("open-ca.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    inst.write(
        "open.key",
        &std::fs::read_to_string(inst.path("client.key")).unwrap(),
    );
    std::fs::set_permissions(
        inst.path("open.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
}

/// Each bad `tls` table: (what it is, the pool file, words the error must contain).
fn bad_tls_tables() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        (
            "unknown key",
            tls_pool("mysql", "tls = { ca_fle = \"ca.pem\" }", ""),
            vec!["ca_fle", "ca_file"],
        ),
        (
            "bad verify",
            tls_pool("mysql", "tls = { ca_file = \"ca.pem\", verify = \"yes\" }", ""),
            vec!["tls.verify", "\"full\""],
        ),
        (
            "missing CA file",
            tls_pool("redis", "tls = { ca_file = \"nope.pem\" }", ""),
            vec!["tls.ca_file", "nope.pem does not exist"],
        ),
        (
            "CA file that is no certificate",
            tls_pool("redis", "tls = { ca_file = \"not-a-cert.pem\" }", ""),
            vec!["tls.ca_file", "not-a-cert.pem", "certificate"],
        ),
        (
            "CA file others may write",
            tls_pool("mysql", "tls = { ca_file = \"open-ca.pem\" }", ""),
            vec!["tls.ca_file", "open-ca.pem", "chmod go-w"],
        ),
        (
            "certificate without its key",
            tls_pool("mysql", "tls = { ca_file = \"ca.pem\", cert_file = \"client.pem\" }", ""),
            vec!["tls.key_file", "set `key_file` too"],
        ),
        (
            "key readable by others",
            tls_pool(
                "redis",
                "tls = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"open.key\" }",
                "",
            ),
            vec!["tls.key_file", "open.key", "chmod 600"],
        ),
        (
            "key of another certificate",
            tls_pool(
                "mysql",
                "tls = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"other.key\" }",
                "",
            ),
            vec!["tls.key_file", "other.key is not the key of the certificate in"],
        ),
        (
            "server_name for MySQL",
            tls_pool("mysql", "tls = { ca_file = \"ca.pem\", server_name = \"db.internal\" }", ""),
            vec!["tls.server_name", "verify = \"ca\""],
        ),
        (
            "server_name without name checks",
            tls_pool(
                "redis",
                "tls = { ca_file = \"ca.pem\", verify = \"ca\", server_name = \"db.internal\" }",
                "",
            ),
            vec!["tls.server_name", "verify = \"full\""],
        ),
        (
            "a step's own bad table",
            tls_pool(
                "redis",
                "tls = { ca_file = \"ca.pem\" }",
                "tls = { ca_file = \"ca.pem\", verify = \"maybe\" }",
            ),
            vec!["[[protocol]] 1", "tls.verify"],
        ),
        (
            "tls on a tcp monitor",
            "primary = \"a\"\nsecondary = \"b\"\n[monitor]\ntype = \"tcp\"\nport = 22\ntls = { ca_file = \"ca.pem\" }\n".into(),
            vec!["key `tls` does not apply to a `tcp` monitor"],
        ),
    ]
}

/// Valid tables: summarised, the step inherits the monitor's unless it has its own, and
/// the key's contents appear nowhere.
fn valid_tls_tables_are_summarised(inst: &Instance) {
    let client = "cert_file = \"client.pem\", key_file = \"client.key\"";
    for kind in ["mysql", "redis"] {
        inst.write(
            "pools/db.toml",
            &tls_pool(
                kind,
                &format!("tls = {{ ca_file = \"ca.pem\", {client} }}"),
                "",
            ),
        );
        let r = inst.run(&["check-config", "--offline"]);
        assert_eq!(r.code, 0, "{kind}: {r:?}");
        let ca = inst.path("ca.pem");
        let line = format!(
            "pool db: monitor: TLS, verify full against {}, client certificate {}",
            ca.display(),
            inst.path("client.pem").display()
        );
        assert!(r.stdout.contains(&line), "{kind}: {line} in {}", r.stdout);
        assert!(
            !r.stdout.contains("step `"),
            "{kind}: the step inherits: {}",
            r.stdout
        );
        let key = std::fs::read_to_string(inst.path("client.key")).unwrap();
        let body = key.lines().nth(1).unwrap();
        assert!(!r.stdout.contains(body) && !r.stderr.contains(body));
    }
    inst.write(
        "pools/db.toml",
        &tls_pool(
            "redis",
            "tls = { ca_file = \"ca.pem\" }",
            "tls = { ca_file = \"ca.pem\", verify = \"none\" }",
        ),
    );
    let r = inst.run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("pool db: step `redis_promote`: TLS, verify none")
            && r.stdout.contains("warning: pool db: tls verify = \"none\""),
        "{}",
        r.stdout
    );
}

both_modes!(systemd_style_durations_in_the_config);
/// Durations as systemd writes them in its units are accepted in the config and mean the
/// same (`check-config --json` shows them in seconds).
fn systemd_style_durations_in_the_config() {
    let inst = Instance::with(
        "tick_interval = \"1min 30s\"\nsystem_check_interval = \"5min\"\nhistory_retention = \"2 weeks\"\nstale_warning = \"1.5h\"\nstale_critical = \"2h\"\n",
        &[("db", TWO_STEP_POOL)],
    );
    let r = inst.run(&["check-config", "--offline", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["tick_interval_s"], 90.0);
    assert_eq!(v["system_check_interval_s"], 300.0);
    assert_eq!(v["history_retention_s"], 14.0 * 86400.0);
    assert_eq!(v["stale_warning_s"], 5400.0);
    assert_eq!(v["pools"][0]["steps"][0]["timeout_s"], 3.0);
    assert_eq!(v["pools"][0]["monitor"]["type"], "nagios");
}
