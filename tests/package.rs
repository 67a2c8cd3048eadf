//! What the Debian package ships, from the real binary: `--version`, shell completions and
//! the man page; and (ignored, run by scripts/test) the package itself, built, installed,
//! run and purged.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{BIN, Run};

const SUBCOMMANDS: &[&str] = &[
    "tick",
    "report",
    "promote",
    "reset",
    "history",
    "pause",
    "resume",
    "check-config",
    "init",
    "hosts",
    "completions",
    "man",
];

fn deadpool(args: &[&str]) -> Run {
    Run::from(Command::new(BIN).args(args).output().unwrap())
}

/// Runs `program args` with `input` on stdin.
fn pipe(program: &str, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (Debian package groff-base): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// `deadpool X.Y.Z (COMMIT)` where COMMIT is a short hash or `unknown commit`. The first two
/// words are what the hosts step reads from a client's helper to check compatibility.
fn assert_version_line(line: &str) {
    let rest = line
        .strip_prefix(&format!("deadpool {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("not `deadpool VERSION (COMMIT)`: {line:?}"));
    let commit = rest
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("no closing parenthesis: {line:?}"));
    assert!(
        commit == "unknown commit"
            || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "not a commit: {line:?}"
    );
}

#[test]
fn version_names_the_version_and_the_commit() {
    let r = deadpool(&["--version"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
    assert_version_line(r.stdout.trim_end());
}

#[test]
fn completions_cover_every_subcommand() {
    let r = deadpool(&["completions", "bash"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("complete -F _deadpool"), "{r:?}");
    for sub in SUBCOMMANDS {
        assert!(r.stdout.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let r = deadpool(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {r:?}");
        assert!(r.stdout.contains("check-config"), "{shell}: {r:?}");
    }
}

#[test]
fn completions_refuse_an_unknown_shell() {
    let r = deadpool(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(
        r.stderr.contains("bash"),
        "the error lists the shells: {r:?}"
    );
}

#[test]
fn man_page_describes_every_subcommand_and_renders() {
    let r = deadpool(&["man"]);
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().next().unwrap_or("");
    assert!(first.starts_with(".TH DEADPOOL 1 "), "{first:?}");
    for sub in SUBCOMMANDS {
        assert!(
            r.stdout.contains(&format!(".SS \"deadpool {sub}\"")),
            "no section for {sub}"
        );
    }
    // Subcommands live in this page: no references to pages the package does not ship.
    assert!(!r.stdout.contains("deadpool\\-tick(1)"), "{}", r.stdout);

    // -ww: every groff warning; the page must render without one. -P-cbu: plain text, no
    // bold or underline by escape sequence or overstrike.
    let rendered = pipe("groff", &["-man", "-Tutf8", "-ww", "-P-cbu"], &r.stdout);
    assert_eq!(rendered.code, 0, "{rendered:?}");
    assert!(
        rendered.stderr.is_empty(),
        "groff warned:\n{}",
        rendered.stderr
    );
    for expected in [
        "NAME",
        "SYNOPSIS",
        "COMMANDS",
        "--dry-run",
        "deadpool check-config",
        "EXIT STATUS",
        "ENVIRONMENT",
        "DEADPOOL_CONFIG",
        "DEADPOOL_LOG",
        "NO_COLOR",
        "FILES",
        "/var/lib/deadpool/deadpool.db",
        "SEE ALSO",
        "UNKNOWN",
    ] {
        assert!(
            rendered.stdout.contains(expected),
            "rendered page lacks {expected}:\n{}",
            rendered.stdout
        );
    }
}

/// mandoc's linter, the strictest reader of man pages Debian has: not one message, not
/// even a style note.
#[test]
fn man_page_passes_mandoc_lint() {
    let r = deadpool(&["man"]);
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("deadpool.1");
    std::fs::write(&page, &r.stdout).unwrap();
    let lint = Command::new("mandoc")
        .args(["-Tlint", "-Wstyle"])
        .arg(&page)
        .output()
        .expect("mandoc must be installed (Debian package mandoc)");
    let said =
        String::from_utf8_lossy(&lint.stdout).into_owned() + &String::from_utf8_lossy(&lint.stderr);
    assert!(
        lint.status.success() && said.is_empty(),
        "mandoc -Tlint:\n{said}"
    );
    let first = r.stdout.lines().next().unwrap();
    assert!(
        first.starts_with(".TH DEADPOOL 1 20") && first.contains("\"deadpool "),
        "{first}"
    );
}

/// The license Cargo.toml names, in full at the top of the repository.
#[test]
fn the_repository_has_the_license_cargo_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("\nlicense = \"MIT\"\n"));
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(license.starts_with("MIT License\n"), "{license}");
    assert!(license.contains("Permission is hereby granted, free of charge"));
}

/// Purges the package when the test ends, passed or failed.
#[derive(Debug)]
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "deadpool"]).output();
    }
}

fn run(program: &str, args: &[&str]) -> Run {
    let cwd = env!("CARGO_MANIFEST_DIR");
    Run::from(
        Command::new(program)
            .current_dir(cwd)
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
#[ignore = "builds a release package; run by scripts/test"]
fn debian_package_installs_runs_and_purges() {
    refuse_to_replace_a_real_deadpool();
    let deb = common::deb::build();
    assert_lintian_clean(&deb);

    let _guard = Installed;
    let install = run("dpkg", &["-i", &deb]);
    assert_eq!(install.code, 0, "{install:?}");
    assert!(
        install.stdout.contains("not enabled"),
        "postinst says the timer waits for a pool: {install:?}"
    );

    let version = run("/usr/bin/deadpool", &["--version"]);
    assert_eq!(version.code, 0, "{version:?}");
    assert_version_line(version.stdout.trim_end());

    assert_files_installed();

    // The conffile: the example instance settings, registered so upgrades keep local edits.
    assert!(Path::new("/etc/deadpool/deadpool.toml").is_file());
    let conffiles = run("dpkg-query", &["-W", "-f=${Conffiles}", "deadpool"]);
    assert!(
        conffiles.stdout.contains("/etc/deadpool/deadpool.toml"),
        "{conffiles:?}"
    );

    // It validates, and holds no pool: a tick does nothing until one is configured.
    let check = run(
        "/usr/bin/deadpool",
        &["--config", "/etc/deadpool", "check-config", "--offline"],
    );
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("(0 pool(s)"), "{check:?}");

    assert_notices(&std::fs::read_to_string("/usr/share/doc/deadpool/copyright").unwrap());

    // A tick of the shipped instance makes its state dir; purge takes it away.
    let tick = run("/usr/bin/deadpool", &["--config", "/etc/deadpool", "tick"]);
    assert_eq!(tick.code, 0, "{tick:?}");
    assert!(Path::new("/var/lib/deadpool/deadpool.db").is_file());
    let remove = run("dpkg", &["--remove", "deadpool"]);
    assert_eq!(remove.code, 0, "{remove:?}");
    assert!(
        Path::new("/var/lib/deadpool/deadpool.db").is_file(),
        "remove keeps the state, as it keeps the config"
    );
    let purge = run("dpkg", &["--purge", "deadpool"]);
    assert_eq!(purge.code, 0, "{purge:?}");
    assert!(!Path::new("/usr/bin/deadpool").exists());
    assert!(!Path::new("/etc/deadpool/deadpool.toml").exists());
    assert!(
        !Path::new("/var/lib/deadpool").exists(),
        "purge removes the state"
    );
}

/// Never clobber a deadpool this machine really uses.
fn refuse_to_replace_a_real_deadpool() {
    let installed = run("dpkg-query", &["-W", "-f=${Status}", "deadpool"]);
    assert!(
        !installed.stdout.contains("installed"),
        "a deadpool package is already installed here; refusing to replace it"
    );
    for path in ["/usr/bin/deadpool", "/etc/deadpool", "/var/lib/deadpool"] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists; refusing to overwrite it"
        );
    }
}

/// Lintian, Debian's package checker: not one error or warning.
fn assert_lintian_clean(deb: &str) {
    let lintian = Command::new("lintian")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--no-cfg", "--fail-on", "error,warning", deb])
        .output()
        .expect("lintian must be installed (Debian package lintian)");
    let said = String::from_utf8_lossy(&lintian.stdout);
    assert!(
        lintian.status.success()
            && !said
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian:\n{said}{}",
        String::from_utf8_lossy(&lintian.stderr)
    );
}

/// The units, completions, man page, docs and example plugins, where Debian puts them.
fn assert_files_installed() {
    for path in [
        "/lib/systemd/system/deadpool.service",
        "/lib/systemd/system/deadpool.timer",
        "/lib/systemd/system/deadpool@.service",
        "/lib/systemd/system/deadpool@.timer",
        "/usr/share/bash-completion/completions/deadpool",
        "/usr/share/zsh/vendor-completions/_deadpool",
        "/usr/share/fish/vendor_completions.d/deadpool.fish",
        "/usr/share/man/man1/deadpool.1.gz",
        "/usr/share/doc/deadpool/README.md",
        "/usr/share/doc/deadpool/FAULTS.md",
        "/usr/share/doc/deadpool/examples/deadpool.toml",
        "/usr/share/doc/deadpool/copyright",
        "/usr/share/doc/deadpool/changelog.gz",
    ] {
        assert!(Path::new(path).is_file(), "{path} is not installed");
    }
    use std::os::unix::fs::PermissionsExt;
    let plugin = Path::new("/usr/share/doc/deadpool/examples/plugins/check_example");
    let mode = std::fs::metadata(plugin).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "example plugins stay executable");
}

/// The copyright notices of what is compiled in, and the changelog.
fn assert_notices(copyright: &str) {
    for needed in [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        "License: Expat",
        "May you do good and not evil.",
        "Sara Golemon",
        "License: BSD-3-clause",
        "vendored/rust/rusqlite-",
        "vendored/rust/ssh2-",
    ] {
        assert!(copyright.contains(needed), "copyright lacks {needed}");
    }
    let changelog = run("sh", &["-c", "zcat /usr/share/doc/deadpool/changelog.gz"]);
    assert!(
        changelog.stdout.starts_with(&format!(
            "deadpool ({}) unstable; urgency=medium",
            env!("CARGO_PKG_VERSION")
        )) && changelog
            .stdout
            .contains(" -- Deadpool Tester <deadpool-tester@example.org>  "),
        "{changelog:?}"
    );
}
