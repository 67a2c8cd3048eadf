//! Whole-output tests: a command's exit code and entire output compared with a reviewed
//! file in `tests/golden/`, after times, durations and paths are normalised. A change in
//! wording is then a visible diff of a golden file. `UPDATE_GOLDEN=1 cargo test` rewrites
//! the files; review the diff before committing it.
//!
//! Pools that confirm outages by time say so in their output (thresholds in words, perfdata,
//! `down_for_s`), so a run with `DEADPOOL_TEST_DETECTION=down_for` compares with its own
//! files, in `tests/golden/down_for/` (rewrite them with `UPDATE_GOLDEN=1` in that mode).

use std::path::PathBuf;

use super::{Detection, Instance, Run, detection};

fn golden_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    match detection() {
        Detection::Count => dir.join(name),
        Detection::Time => dir.join("down_for").join(name),
    }
}

/// Runs `deadpool ARGS` in `inst`, checks the exit code, and compares the normalised
/// stdout with `tests/golden/NAME`.
pub fn assert_output(inst: &Instance, args: &[&str], code: i32, name: &str) -> Run {
    assert_output_with(inst, args, code, name, |text| text)
}

/// [`assert_output`], with `also` applied to the normalised stdout before it is compared:
/// for a value that changes from run to run in one test only.
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
    let text = also(text);
    let text = format!("$ deadpool {} (exit {code})\n{text}", args.join(" "));
    let path = golden_path(name);
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
