//! The shipped systemd units: `systemd-analyze verify` accepts them without a single
//! warning, and the timer settings that matter for second-scale ticks are there.

mod common;

use std::path::Path;
use std::process::Command;

fn unit(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(name),
    )
    .unwrap()
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let tmp = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test. Templates are
    // verified through an instance name, as systemd would load them.
    for (source, target) in [
        ("deadpool.service", "deadpool.service"),
        ("deadpool.timer", "deadpool.timer"),
        ("deadpool@.service", "deadpool@main.service"),
        ("deadpool@.timer", "deadpool@main.timer"),
    ] {
        let text = unit(source).replace("/usr/bin/deadpool", common::BIN);
        std::fs::write(tmp.path().join(target), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .current_dir(tmp.path())
        .args([
            "verify",
            "--man=no",
            "deadpool.service",
            "deadpool.timer",
            "deadpool@main.service",
            "deadpool@main.timer",
        ])
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys are only warnings to systemd-analyze; for us they are failures.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze complained:\n{stderr}"
    );
}

#[test]
fn units_have_the_settings_second_scale_ticks_need() {
    for service in ["deadpool.service", "deadpool@.service"] {
        let text = unit(service);
        for needed in [
            "Type=oneshot",
            "TimeoutStartSec=",
            "StartLimitIntervalSec=0",
            "ProtectSystem=strict",
            "StateDirectory=",
            "PrivateTmp=yes",
        ] {
            assert!(text.contains(needed), "{service} lacks {needed}");
        }
    }
    for timer in ["deadpool.timer", "deadpool@.timer"] {
        let text = unit(timer);
        assert!(text.contains("OnBootSec="), "{timer}");
        assert!(text.contains("\nOnUnitInactiveSec="), "{timer}");
        assert!(
            !text.contains("\nOnUnitActiveSec="),
            "{timer}: does not re-arm for oneshot services"
        );
        assert!(text.contains("\nAccuracySec=100ms"), "{timer}");
    }
}
