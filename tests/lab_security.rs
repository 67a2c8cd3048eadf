//! Least privilege in the namespace lab: a failover through exactly the README's sudoers
//! rules for an unprivileged SSH user, and sudo refusing everything else. Run by
//! `scripts/test` (they need root); `cargo test` lists them as ignored.

#[macro_use]
mod common;

use common::Instance;
use common::lab::{Lab, VIP};

/// Runs `script` as the unprivileged lab user inside a lab host.
fn as_user(lab: &Lab, ns_var: &str, script: &str) -> (bool, String) {
    let user = lab.var("LAB_SSH_SUDO_USER");
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.var(ns_var),
            "su",
            "-s",
            "/bin/sh",
            user,
            "-c",
            script,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_failover_works_through_exactly_the_readme_sudoers_rules_and_nothing_else_does
);
fn a_failover_works_through_exactly_the_readme_sudoers_rules_and_nothing_else_does() {
    let lab = Lab::fresh();
    lab.sh(&["vip", "add", "db1", &format!("{VIP}/24")]);
    lab.map_on_apps("db.service");
    let rules = lab.install_readme_sudoers(common::BIN);
    assert!(
        !rules.contains("/bin/sh") && !rules.contains('*'),
        "{rules}"
    );
    let ssh = format!(
        "ssh = {{ user = \"{}\", sudo = true }}",
        lab.var("LAB_SSH_SUDO_USER")
    );
    let steps = format!(
        r#"{hosts}{vip}
[[protocol]]
type = "exec"
name = "restart app"
hosts = ["{app1}"]
exec_command = "systemctl restart myapp"
timeout = "10s"
{ssh}
"#,
        hosts = lab.etc_hosts_step(common::BIN, &ssh),
        vip = lab.vip_step(&ssh),
        app1 = lab.var("LAB_APP1_IP"),
    )
    // The README's example restarts an app; in the lab, its rule allows a marker file.
    .replace(
        "systemctl restart myapp",
        &format!("/usr/bin/touch {}/restarted", lab.var("LAB_DIR")),
    );
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool(3, &steps))],
    );
    assert_eq!(inst.tick().code, 0);
    let report = inst.run(&["report", "--nagios"]);
    assert_eq!(report.code, 0, "readiness through sudo: {report:?}");

    lab.sh(&["kill", "db1", "mysql"]);
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    for ns in ["LAB_APP1_NS", "LAB_APP2_NS"] {
        assert_eq!(
            lab.app_maps(ns, "db.service").as_deref(),
            Some(lab.var("LAB_DB2_IP"))
        );
    }
    assert!(lab.sh(&["vip", "show", "db2"]).contains(VIP));
    assert!(!lab.sh(&["vip", "show", "db1"]).contains(VIP));
    assert!(std::path::Path::new(&format!("{}/restarted", lab.var("LAB_DIR"))).exists());

    // Everything else is refused: no shell, no other arguments, no extra words.
    let helper = common::BIN;
    for attempt in [
        "sudo -n sh -c id".to_string(),
        "sudo -n /bin/sh -c id".to_string(),
        "sudo -n bash".to_string(),
        format!(
            "sudo -n /bin/sh -c '{helper} hosts test --name db.service --file /etc/hosts; id -u'"
        ),
        format!(
            "sudo -n {helper} hosts switch --name db.service --ip 10.213.0.66 --file /etc/hosts"
        ),
        format!(
            "sudo -n {helper} hosts switch --name db.service --ip 10.213.0.12 --file /etc/shadow"
        ),
        format!("sudo -n {helper} hosts test --name db.service --file /etc/hosts extra"),
        "sudo -n /usr/sbin/ip addr add 10.213.0.99/24 dev eth0".to_string(),
    ] {
        let (ok, said) = as_user(&lab, "LAB_APP1_NS", &attempt);
        assert!(!ok, "`{attempt}` was allowed: {said}");
    }
    // The rule itself works for the user: proof that the refusals are sudo's.
    let (ok, said) = as_user(
        &lab,
        "LAB_APP1_NS",
        &format!("sudo -n {helper} hosts test --name db.service --file /etc/hosts"),
    );
    assert!(ok, "{said}");
}

/// A pool whose only step runs `true` on app1 over SSH on `port`, with `known_hosts`.
fn ssh_probe(lab: &Lab, port: u16, known_hosts: &std::path::Path) -> Instance {
    let settings = lab
        .settings_with_ssh(Some(known_hosts.to_str().unwrap()))
        .replace("[ssh]\n", &format!("[ssh]\nport = {port}\n"));
    let pool = format!(
        "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"nagios\"\ncommand = \"monitor {{host}}\"\n\n[[protocol]]\ntype = \"exec\"\nhosts = [\"{}\"]\nexec_command = \"true\"\ntimeout = \"10s\"\n",
        lab.var("LAB_APP1_IP")
    );
    Instance::with(&settings, &[("db", &pool)])
}

/// The preflight line of `tick --dry-run` for app1.
fn preflight(inst: &Instance) -> String {
    let r = inst.run(&["tick", "--dry-run"]);
    r.stdout
        .lines()
        .find(|l| l.contains("preflight on"))
        .unwrap_or_else(|| panic!("no preflight line: {r:?}"))
        .to_string()
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    known_hosts_as_openssh_reads_it_key_types_ports_hashes_and_revocations
);
fn known_hosts_as_openssh_reads_it_key_types_ports_hashes_and_revocations() {
    let lab = Lab::fresh();
    let port = 2222;
    let dir = lab.sh(&["sshd-keys", "app1", "2222"]).trim().to_string();
    let ip = lab.var("LAB_APP1_IP");
    let public = |t: &str| {
        let text = std::fs::read_to_string(format!("{dir}/key_{t}.pub")).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let file = std::path::Path::new(lab.var("LAB_DIR")).join("kh-test");
    let write = |text: String| std::fs::write(&file, text).unwrap();
    let ok = |why: &str| {
        let line = preflight(&ssh_probe(&lab, port, &file));
        assert!(line.contains(": OK"), "{why}: {line}");
    };
    let refused = |why: &str, words: &str| {
        let line = preflight(&ssh_probe(&lab, port, &file));
        assert!(
            !line.contains(": OK") && line.contains(words),
            "{why}: {line}"
        );
    };

    // Only an RSA key, or only an ECDSA key, is known: deadpool asks for that type.
    write(format!("[{ip}]:{port} {}\n", public("rsa")));
    ok("RSA only");
    write(format!("[{ip}]:{port} {}\n", public("ecdsa")));
    ok("ECDSA only");
    // A non-22 port is looked up as [host]:port; a bare host line is for port 22.
    write(format!("{ip} {}\n", public("ed25519")));
    refused("a port-22 line for port 2222", "unknown host key");
    // Hashed names work for any port (ssh-keygen -H hashes the file in place).
    write(format!("[{ip}]:{port} {}\n", public("ed25519")));
    let hashed = std::process::Command::new("ssh-keygen")
        .args(["-H", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(hashed.status.success());
    assert!(std::fs::read_to_string(&file).unwrap().starts_with("|1|"));
    ok("hashed");
    // @revoked wins over a line that accepts the key.
    write(format!(
        "[{ip}]:{port} {k}\n@revoked * {k}\n",
        k = public("ed25519")
    ));
    refused("revoked", "REVOKED");
    // A CA line is not a host key.
    write(format!(
        "@cert-authority [{ip}]:{port} {}\n",
        public("ed25519")
    ));
    refused("cert-authority only", "@cert-authority");
}
