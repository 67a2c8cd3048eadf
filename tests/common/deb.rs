//! The Debian package, built by the project's own script (scripts/package-deb): for the
//! tests that install it, on this machine or inside a container.

use std::path::PathBuf;
use std::process::Command;

use super::Run;

/// Builds the package (a release build, then dpkg-deb) and returns its path, relative to
/// the repository: `target/debian/deadpool_VERSION_ARCH.deb`.
pub fn build() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let built = Run::from(
        Command::new("bash")
            .current_dir(root)
            .args(["scripts/package-deb"])
            .env("DEBFULLNAME", "Deadpool Tester")
            .env("DEBEMAIL", "deadpool-tester@example.org")
            .output()
            .unwrap(),
    );
    assert_eq!(built.code, 0, "{built:?}");
    let deb = built.stdout.lines().last().unwrap_or("").to_string();
    let arch = Run::from(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap(),
    );
    assert_eq!(
        deb,
        format!(
            "target/debian/deadpool_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            arch.stdout.trim()
        )
    );
    deb
}

/// [`build`]'s package as an absolute path.
pub fn build_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(build())
}
