//! docs/FAULTS.md: every row names at least one test, and every named test exists.

use std::path::Path;

fn source_of(module: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = vec![
        root.join("tests").join(format!("{module}.rs")),
        root.join("src").join(format!("{module}.rs")),
    ];
    candidates.push(root.join("src").join(module).join("mod.rs"));
    candidates
        .into_iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
}

#[test]
fn every_fault_names_tests_that_exist() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FAULTS.md"))
        .unwrap();
    let rows: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| fault") && !l.starts_with("|---"))
        .collect();
    assert!(rows.len() >= 30, "the matrix has {} rows", rows.len());
    for row in rows {
        let cell = row.trim_end_matches('|').rsplit('|').next().unwrap();
        let names: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
        assert!(!names.is_empty(), "no test named in: {row}");
        for name in names {
            let parts: Vec<&str> = name.split("::").collect();
            let (module, function) = (parts[0], parts[parts.len() - 1]);
            let source = source_of(module).unwrap_or_else(|| panic!("no source for `{name}`"));
            assert!(
                source.contains(&format!("fn {function}(")),
                "`{name}` does not exist"
            );
        }
    }
}

/// The README and the man page say what `commands::shared::actor` does: the real uid's
/// name (and sudo's SUDO_USER only under a root sudo), never `$USER`, which anyone sets.
#[test]
fn the_docs_name_the_real_user_as_the_recorded_person() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let man = std::process::Command::new(env!("CARGO_BIN_EXE_deadpool"))
        .arg("man")
        .output()
        .unwrap();
    let man = String::from_utf8(man.stdout).unwrap();
    for (doc, text) in [("README", &readme), ("man page", &man)] {
        assert!(
            text.contains("user name of the real uid"),
            "{doc} does not say who is recorded"
        );
        for claim in ["`$SUDO_USER`, else `$USER`", ".BR SUDO_USER \", \" USER"] {
            assert!(!text.contains(claim), "{doc} still says {claim}");
        }
    }
}
