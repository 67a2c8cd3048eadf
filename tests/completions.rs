//! Shell completions, run by the real shells: bash (the function `complete` registers,
//! called as bash calls it), zsh (an interactive zsh driven through zpty, TAB pressed) and
//! fish (`complete -C`). Pool names come from the config dir named by `--config`, else
//! `$DEADPOOL_CONFIG`; promote's target is offered only after the pool.

mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

/// A config dir with two pools (one named by its `name` key) and another with one.
fn config_dirs() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("main/pools");
    let other = tmp.path().join("other/pools");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(main.join("orders_db.toml"), "primary = \"a\"\n").unwrap();
    std::fs::write(
        main.join("file_stem.toml"),
        "# the name key wins\nname = \"renamed\"\nprimary = \"a\"\n[monitor]\nname = \"not-this\"\n",
    )
    .unwrap();
    std::fs::write(other.join("elsewhere.toml"), "primary = \"a\"\n").unwrap();
    tmp
}

fn script(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn sorted(words: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = words.filter(|w| !w.is_empty()).collect();
    v.sort();
    v.dedup();
    v
}

/// The candidates `shell` prints, one a line, each cut out of its line by `word`, sorted;
/// fails the test when the shell cannot start or fails. `name` names the shell and its
/// Debian package in those failures.
fn candidates(mut shell: Command, name: &str, word: impl Fn(&str) -> &str) -> Vec<String> {
    let out = shell
        .output()
        .unwrap_or_else(|e| panic!("{name} must be installed (Debian package {name}): {e}"));
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sorted(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| word(l).to_string()),
    )
}

/// A command line typed so far (`{dir}` stands for the parent of [`config_dirs`]) and the
/// candidates a shell offers for its last word.
type LineCase = (&'static str, &'static [&'static str]);

/// The lines fish and zsh complete alike; each test adds the ones only its shell is asked.
const LINE_CASES: &[LineCase] = &[
    (
        "deadpool --config {dir}/main promote ",
        &["orders_db", "renamed"],
    ),
    (
        "deadpool --config {dir}/main promote orders_db ",
        &["primary", "secondary"],
    ),
    (
        "deadpool --config {dir}/main reset ",
        &["orders_db", "renamed"],
    ),
    (
        "deadpool --config {dir}/main pause --for 1h ",
        &["orders_db", "renamed"],
    ),
    (
        "deadpool --config {dir}/main report --pool ",
        &["orders_db", "renamed"],
    ),
    ("deadpool --config={dir}/other resume ", &["elsewhere"]),
    ("deadpool pro", &["promote"]),
];

/// Each case: the words as bash splits them (the last is the word being completed) and
/// the candidates expected.
#[test]
fn bash_completes_pools_and_the_target() {
    let tmp = config_dirs();
    let dir = tmp.path().display().to_string();
    let main = format!("{dir}/main");
    let other = format!("{dir}/other");
    let file = tmp.path().join("deadpool.bash");
    std::fs::write(&file, script("bash")).unwrap();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["deadpool", "--config", &main, "promote", ""],
            &["orders_db", "renamed"],
        ),
        (
            vec!["deadpool", "--config", &main, "promote", "orders_db", ""],
            &["primary", "secondary"],
        ),
        (
            vec!["deadpool", "--config", &main, "promote", "o"],
            &["orders_db"],
        ),
        (
            vec!["deadpool", "--config", &main, "reset", ""],
            &["orders_db", "renamed"],
        ),
        (
            vec!["deadpool", "--config", &main, "pause", "--for", "1h", ""],
            &["orders_db", "renamed"],
        ),
        (
            vec!["deadpool", "--config", &main, "report", "--pool", ""],
            &["orders_db", "renamed"],
        ),
        (
            vec!["deadpool", "--config", &main, "history", "--pool", "=", ""],
            &["orders_db", "renamed"],
        ),
        // bash splits --config=DIR at the `=`.
        (
            vec!["deadpool", "--config", "=", &other, "resume", ""],
            &["elsewhere"],
        ),
        (vec!["deadpool", "pro"], &["promote"]),
    ];
    let mut text = format!("source {}\n", file.display());
    text.push_str(
        r#"comp() {
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
    local f; f=$(complete -p deadpool); f=${f#*-F }; f=${f%% *}
    "$f" deadpool "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s ' "${COMPREPLY[@]}"; echo
}
"#,
    );
    for (words, _) in &cases {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        text.push_str(&format!("comp {}\n", quoted.join(" ")));
    }
    text.push_str(&format!(
        "DEADPOOL_CONFIG={dir}/other comp deadpool reset ''\n"
    ));
    let out = Command::new("bash")
        .args(["--norc", "-c", &text])
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), cases.len() + 1, "{stdout}");
    for ((words, expected), line) in cases.iter().zip(&lines) {
        let got = sorted(line.split_whitespace().map(str::to_string));
        assert_eq!(got, *expected, "{words:?}");
    }
    assert_eq!(
        lines[cases.len()].trim(),
        "elsewhere",
        "from $DEADPOOL_CONFIG"
    );
}

#[test]
fn fish_completes_pools_and_the_target() {
    let tmp = config_dirs();
    let dir = tmp.path().display().to_string();
    let file = tmp.path().join("deadpool.fish");
    std::fs::write(&file, script("fish")).unwrap();
    let fish_only: &[LineCase] = &[(
        "deadpool --config {dir}/main promote orders_db primary ",
        &[],
    )];
    for (line, expected) in LINE_CASES.iter().chain(fish_only) {
        let line = line.replace("{dir}", &dir);
        let mut fish = Command::new("fish");
        fish.args(["--no-config", "-c"])
            .arg(format!("source {}; complete -C '{line}'", file.display()));
        // fish prints each candidate with a tab and its description.
        let got = candidates(fish, "fish", |l| l.split('\t').next().unwrap_or(""));
        assert_eq!(got, *expected, "{line}");
    }
    let out = Command::new("fish")
        .args(["--no-config", "-c"])
        .arg(format!(
            "source {}; complete -C 'deadpool resume '",
            file.display()
        ))
        .env("DEADPOOL_CONFIG", format!("{dir}/other"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "elsewhere\tpool"
    );
}

/// Drives an interactive zsh through zpty: loads the completion from `fpath`, types the
/// line, presses TAB, and prints every candidate that reaches `compadd`.
const ZSH_CAPTURE: &str = r#"
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
local line init=$(mktemp)
cat > $init <<INIT
PROMPT=
fpath=($1 \$fpath)
autoload -U compinit
compinit -u -D
bindkey '^I' complete-word
null-line() { echo -E - \$'\\0' }
compprefuncs=( null-line )
comppostfuncs=( null-line exit )
zstyle ':completion:*' list-grouped false
zstyle ':completion:*' insert-tab false
compadd() {
    if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
        builtin compadd "\$@"
        return \$?
    fi
    typeset -a __hits
    builtin compadd -A __hits "\$@"
    local ret=\$?
    (( \$#__hits )) && print -l -- \$__hits
    return \$ret
}
echo ok
INIT
zpty -w z "source $init"
repeat 4; do
    zpty -r z line
    [[ $line == ok* ]] && break
done
zpty -w z "$2"$'\t'
integer tog=0
while zpty -r z line; do
    if [[ $line == *$'\0'* ]]; then
        (( tog++ )) && break || continue
    fi
    (( tog )) && print -r -- ${line%$'\r'}
done
zpty -d z
rm -f $init
"#;

fn zsh_candidates(fpath: &Path, line: &str, config_env: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "zsh", "-f", "-c", ZSH_CAPTURE, "capture"])
        .arg(fpath)
        .arg(line);
    if let Some(dir) = config_env {
        cmd.env("DEADPOOL_CONFIG", dir);
    } else {
        cmd.env_remove("DEADPOOL_CONFIG");
    }
    candidates(cmd, "zsh", str::trim)
}

#[test]
fn zsh_completes_pools_and_the_target() {
    let tmp = config_dirs();
    let dir = tmp.path().display().to_string();
    let fpath = tmp.path().join("zfunc");
    std::fs::create_dir(&fpath).unwrap();
    std::fs::write(fpath.join("_deadpool"), script("zsh")).unwrap();
    let zsh_only: &[LineCase] = &[(
        "deadpool --config {dir}/main report --pool=",
        &["orders_db", "renamed"],
    )];
    for (line, expected) in LINE_CASES.iter().chain(zsh_only) {
        let line = line.replace("{dir}", &dir);
        assert_eq!(zsh_candidates(&fpath, &line, None), *expected, "{line}");
    }
    let other = format!("{dir}/other");
    assert_eq!(
        zsh_candidates(&fpath, "deadpool reset ", Some(&other)),
        ["elsewhere"]
    );
}
