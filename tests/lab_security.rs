//! Least privilege in the namespace lab: a failover through exactly the README's sudoers
//! rules for an unprivileged SSH user, and sudo refusing everything else. Run by
//! `scripts/test` (they need root); `cargo test` lists them as ignored.

mod common;

use common::Instance;
use common::lab::Lab;

const VIP: &str = "10.213.0.100";

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

#[test]
#[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
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
        r#"
[[protocol]]
type = "etc_hosts"
service_host_name = "db.service"
client_hosts = ["{app1}", "{app2}"]
helper = "{helper}"
timeout = "10s"
{ssh}

[[protocol]]
type = "vip"
address = "{VIP}/24"
interface = "eth0"
timeout = "10s"
{ssh}

[[protocol]]
type = "exec"
name = "restart app"
hosts = ["{app1}"]
exec_command = "systemctl restart myapp"
timeout = "10s"
{ssh}
"#,
        app1 = lab.var("LAB_APP1_IP"),
        app2 = lab.var("LAB_APP2_IP"),
        helper = common::BIN,
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
    for _ in 0..3 {
        inst.tick();
    }
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
