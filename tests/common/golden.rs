//! Whole-outcome tests: a command's exit code, entire stdout and entire stderr compared with
//! a reviewed file in `tests/golden/`, after times, durations and paths are normalised. A
//! change in wording is then a visible diff of a golden file, which reads:
//!
//! ```text
//! $ deadpool ARGS (exit CODE)
//! STDOUT
//! --- stderr
//! STDERR
//! ```
//!
//! A section that does not end with a newline gets one, and the line
//! `(no newline at end)` after it. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the
//! files (of both detection modes); review the diff before committing it.
//!
//! Pools that confirm outages by time say so in their output (thresholds in words, perfdata,
//! `down_for_s`), so the `down_for` half of each test (see `both_modes!`) compares with its
//! own files, in `tests/golden/down_for/`.

use std::path::PathBuf;

use super::{Detection, Instance, Run};

/// The golden file `name` of `inst`'s detection mode.
fn golden_path(inst: &Instance, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    match inst.detection() {
        Detection::Count => dir.join(name),
        Detection::Time => dir.join("down_for").join(name),
    }
}

/// Runs `deadpool ARGS` in `inst`, checks that it exits with `code`, and compares its whole
/// outcome (exit code, normalised stdout and stderr) with `tests/golden/NAME`. The code is
/// asserted as well so that a rewrite of the file cannot record a wrong one unnoticed.
pub fn assert_output(inst: &Instance, args: &[&str], code: i32, name: &str) -> Run {
    assert_output_with(inst, args, code, name, |text| text)
}

/// [`assert_output`], with `also` applied to the normalised stdout and stderr before they
/// are compared: for a value that changes from run to run in one test only.
pub fn assert_output_with(
    inst: &Instance,
    args: &[&str],
    code: i32,
    name: &str,
    also: impl Fn(String) -> String,
) -> Run {
    let r = inst.run(args);
    assert_eq!(r.code, code, "deadpool {}: {r:?}", args.join(" "));
    let dir = inst.dir().display().to_string();
    let text = if args.contains(&"--json") {
        normalise_json(&r.stdout, &dir)
    } else {
        normalise(&r.stdout, &dir)
    };
    let stdout = section(also(text));
    let stderr = section(also(normalise(&r.stderr, &dir)));
    let text = format!(
        "$ deadpool {} (exit {})\n{stdout}--- stderr\n{stderr}",
        args.join(" "),
        r.code
    );
    let path = golden_path(inst, name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return r;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n--- want\n{want}\n--- got\n{text}",
            path.display(),
            first + 1
        );
    }
    r
}

/// A section of a golden file: `text`, ending with a newline; when it did not, the line
/// `(no newline at end)` follows.
fn section(text: String) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text
    } else {
        format!("{text}\n(no newline at end)\n")
    }
}

/// Replaces what changes from run to run: the instance's path, timestamps, durations and
/// ages (`12ms`, `0.03s`, `4s ago`, `in 0.0s`), and perfdata values of times.
pub fn normalise(text: &str, dir: &str) -> String {
    let text = text.replace(dir, "<DIR>");
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        // A timestamp: 2026-11-27 06:24:49Z
        if let Some(len) = timestamp_at(&chars[i..]) {
            out.push_str("<TIME>");
            i += len;
            continue;
        }
        let starts_number = chars[i].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '.'));
        if starts_number {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let unit: String = chars[j..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if matches!(unit.as_str(), "s" | "ms") {
                out.push_str("<T>");
                out.push_str(&unit);
                i = j + unit.len();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn timestamp_at(c: &[char]) -> Option<usize> {
    let shape = "0000-00-00 00:00:00Z";
    if c.len() < shape.len() {
        return None;
    }
    let ok = shape.chars().zip(c).all(|(s, x)| match s {
        '0' => x.is_ascii_digit(),
        other => other == *x,
    });
    ok.then_some(shape.len())
}

/// JSON (one document or one object per line): time-valued fields become `"<T>"`, strings
/// are normalised as text, and each document is pretty-printed with sorted keys.
pub fn normalise_json(text: &str, dir: &str) -> String {
    let docs: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect(),
    };
    docs.into_iter()
        .map(|mut d| {
            scrub(&mut d, dir);
            serde_json::to_string_pretty(&d).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn scrub(v: &mut serde_json::Value, dir: &str) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let timeish = key == "at"
                    || key == "id"
                    || key == "until"
                    || key == "since"
                    || key.ends_with("_at")
                    || key.ends_with("_since")
                    || key.ends_with("_s")
                    || key.ends_with("_ms")
                    || key == "generated_at";
                if timeish && value.is_number() {
                    *value = Value::String("<T>".into());
                } else {
                    scrub(value, dir);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, dir)),
        Value::String(s) => *s = normalise(s, dir),
        _ => {}
    }
}
