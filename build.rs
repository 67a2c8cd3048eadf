//! Build script: records the git commit for `deadpool --version` as `DEADPOOL_COMMIT`, and
//! the date of the man page as `DEADPOOL_DATE` (`$SOURCE_DATE_EPOCH`, else the commit's
//! date, else today), so that a rebuild of one commit makes the same page.
//!
//! Only `git` is needed, and only when it is there: a build from a source tarball (or from a
//! crate unpacked inside some other repository) says "unknown commit" instead of failing.

use std::path::Path;
use std::process::Command;

#[path = "src/civil.rs"]
mod civil;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let commit = match git(&manifest_dir, &["rev-parse", "--show-toplevel"]) {
        // Not our checkout unless the repository's top is this crate's directory.
        Some(top) if same_dir(&top, &manifest_dir) => {
            watch_head(&manifest_dir);
            git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"])
        }
        _ => None,
    };
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(date_of)
        .or_else(|| {
            commit.as_ref()?;
            git(&manifest_dir, &["log", "-1", "--format=%cs"])
        })
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            date_of(now)
        });
    let commit = commit.unwrap_or_else(|| "unknown commit".to_string());
    println!("cargo:rustc-env=DEADPOOL_COMMIT={commit}");
    println!("cargo:rustc-env=DEADPOOL_DATE={date}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Without this, a build outside git would rerun the script whenever any file changes.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/civil.rs");
}

/// Reruns this script when HEAD moves: a checkout changes `HEAD`, a commit changes the ref
/// it points to (or `packed-refs`, where `git gc` puts refs). Watching these few files
/// instead of the whole tree keeps incremental builds fast.
fn watch_head(dir: &str) {
    let mut paths = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(head_ref);
    }
    for path in paths {
        // --git-path resolves worktrees and a shared common dir correctly.
        if let Some(file) = git(dir, &["rev-parse", "--git-path", &path]) {
            let file = Path::new(dir).join(file);
            // A missing file counts as always changed: watch only files that exist.
            if file.exists() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
    }
}

/// One line of git's output, or None if git is missing or fails.
fn git(dir: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_string())
}

fn same_dir(a: &str, b: &str) -> bool {
    match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn date_of(secs: i64) -> String {
    let (year, month, day) = civil::date_of_day(secs.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}
