//! Pure `/etc/hosts` parsing and editing, no I/O. Names match by exact hostname token
//! (ASCII case-insensitive, as the resolver does), never by substring, and only outside
//! comments. An edit changes the target name's mapping and keeps every other byte.

use std::net::IpAddr;

/// One line of the file, split where its tokens are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line<'a> {
    /// The whole line including its ending (`\n`, `\r\n`, or nothing on a last line).
    raw: &'a str,
    /// Byte ranges of the tokens before any `#`: the address, then the names.
    tokens: Vec<(usize, usize)>,
}

impl<'a> Line<'a> {
    fn parse(raw: &'a str) -> Line<'a> {
        let body_end = raw.find('#').unwrap_or(raw.len());
        let body = &raw[..body_end];
        let mut tokens = Vec::new();
        let mut start = None;
        for (i, c) in body.char_indices() {
            let space = c.is_ascii_whitespace();
            match (start, space) {
                (None, false) => start = Some(i),
                (Some(s), true) => {
                    tokens.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            tokens.push((s, body.len()));
        }
        Line { raw, tokens }
    }

    fn token(&self, i: usize) -> &'a str {
        let (s, e) = self.tokens[i];
        &self.raw[s..e]
    }

    /// The address of an entry line, if it has one and at least one name.
    fn address(&self) -> Option<&'a str> {
        (self.tokens.len() >= 2).then(|| self.token(0))
    }

    fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        (1..self.tokens.len())
            .filter(|_| self.tokens.len() >= 2)
            .map(|i| self.token(i))
    }

    fn has_name(&self, name: &str) -> bool {
        self.names().any(|n| n.eq_ignore_ascii_case(name))
    }

    fn ending(&self) -> &'a str {
        if self.raw.ends_with("\r\n") {
            "\r\n"
        } else if self.raw.ends_with('\n') {
            "\n"
        } else {
            ""
        }
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n').map(Line::parse).collect()
}

/// What `name` resolves to: the address of the first entry line that carries it.
pub fn lookup(text: &str, name: &str) -> Option<String> {
    lines(text)
        .iter()
        .find(|l| l.has_name(name))
        .and_then(|l| l.address().map(str::to_string))
}

/// Why a file or a request cannot be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("`{0}` is not a valid host name")]
    BadName(String),
    #[error("the file is not text (it holds a NUL byte or invalid UTF-8)")]
    NotText,
}

/// Checks a host name as the resolver would accept it in a hosts file.
pub fn validate_name(name: &str) -> Result<(), EditError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EditError::BadName(name.to_string()))
    }
}

/// Makes `name` resolve to `ip` and changes nothing else:
/// - the first line whose only name is `name` gets the new address in place of the old;
/// - `name` is removed from every other line that carries it (a line left with no name is
///   removed), so that no earlier or later line shadows the new mapping;
/// - when no line holds `name` alone, a line `ip<TAB>name` is appended, with the file's own
///   line ending.
///
/// Returns the new text, equal to the old when `name` already resolves to `ip` and nowhere
/// else (running it twice is a no-op).
pub fn switch(text: &str, name: &str, ip: IpAddr) -> Result<String, EditError> {
    validate_name(name)?;
    if text.contains('\0') {
        return Err(EditError::NotText);
    }
    let ip_text = ip.to_string();
    let parsed = lines(text);
    let own = parsed
        .iter()
        .position(|l| l.names().count() == 1 && l.has_name(name));
    let mut out = String::with_capacity(text.len() + name.len() + 48);
    for (i, line) in parsed.iter().enumerate() {
        if Some(i) == own {
            let (s, e) = line.tokens[0];
            out.push_str(&line.raw[..s]);
            out.push_str(&ip_text);
            out.push_str(&line.raw[e..]);
        } else if line.has_name(name) {
            out.push_str(&without_name(line, name));
        } else {
            out.push_str(line.raw);
        }
    }
    if own.is_none() {
        let ending = parsed
            .iter()
            .map(Line::ending)
            .find(|e| !e.is_empty())
            .unwrap_or("\n");
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(ending);
        }
        out.push_str(&ip_text);
        out.push('\t');
        out.push_str(name);
        out.push_str(ending);
    }
    Ok(out)
}

/// The line without `name` (and the whitespace before it); empty when no name is left.
fn without_name(line: &Line, name: &str) -> String {
    let keep: Vec<usize> = (1..line.tokens.len())
        .filter(|&i| !line.token(i).eq_ignore_ascii_case(name))
        .collect();
    if keep.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let mut cursor = 0;
    for i in 1..line.tokens.len() {
        if keep.contains(&i) {
            continue;
        }
        // Drop the token together with the whitespace that precedes it.
        let start = line.tokens[i - 1].1;
        let end = line.tokens[i].1;
        out.push_str(&line.raw[cursor..start]);
        cursor = end;
    }
    out.push_str(&line.raw[cursor..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn switches_a_line_of_its_own_in_place() {
        let text = "127.0.0.1\tlocalhost\n10.0.0.11   db  # the primary\n10.0.0.20 app1\n";
        let out = switch(text, "db", ip("10.0.0.12")).unwrap();
        assert_eq!(
            out,
            "127.0.0.1\tlocalhost\n10.0.0.12   db  # the primary\n10.0.0.20 app1\n"
        );
        assert_eq!(
            switch(&out, "db", ip("10.0.0.12")).unwrap(),
            out,
            "twice is a no-op"
        );
    }

    #[test]
    fn never_matches_substrings_or_comments() {
        let text = "10.0.0.11 mydb db1 db.internal # db\n#10.0.0.9 db\n";
        assert_eq!(lookup(text, "db"), None);
        let out = switch(text, "db", ip("10.0.0.12")).unwrap();
        assert_eq!(
            out,
            "10.0.0.11 mydb db1 db.internal # db\n#10.0.0.9 db\n10.0.0.12\tdb\n"
        );
    }

    #[test]
    fn takes_the_name_off_shared_lines_and_removes_shadows() {
        let text = "10.0.0.11 db.internal db\n10.0.0.13 db\n10.0.0.14 other\n";
        let out = switch(text, "db", ip("10.0.0.12")).unwrap();
        assert_eq!(
            out,
            "10.0.0.11 db.internal\n10.0.0.12 db\n10.0.0.14 other\n"
        );
        assert_eq!(lookup(&out, "db").as_deref(), Some("10.0.0.12"));
        assert_eq!(lookup(&out, "db.internal").as_deref(), Some("10.0.0.11"));
    }

    #[test]
    fn keeps_crlf_and_handles_a_missing_final_newline() {
        let text = "127.0.0.1 localhost\r\n::1 ip6-localhost";
        let out = switch(text, "db", ip("fd00::12")).unwrap();
        assert_eq!(
            out,
            "127.0.0.1 localhost\r\n::1 ip6-localhost\r\nfd00::12\tdb\r\n"
        );
        assert_eq!(switch("", "db", ip("10.0.0.1")).unwrap(), "10.0.0.1\tdb\n");
    }

    #[test]
    fn is_case_insensitive_like_the_resolver() {
        let text = "10.0.0.11 DB\n";
        assert_eq!(lookup(text, "db").as_deref(), Some("10.0.0.11"));
        assert_eq!(
            switch(text, "db", ip("10.0.0.12")).unwrap(),
            "10.0.0.12 DB\n"
        );
    }

    #[test]
    fn refuses_bad_names_and_binary_files() {
        assert!(switch("", "a b", ip("10.0.0.1")).is_err());
        assert!(switch("", "-x", ip("10.0.0.1")).is_err());
        assert!(switch("", "db;reboot", ip("10.0.0.1")).is_err());
        assert_eq!(
            switch("10.0.0.1 a\0b\n", "db", ip("10.0.0.1")),
            Err(EditError::NotText)
        );
    }

    use crate::fuzz::{Rng, cases};

    const NAMES: &[&str] = &[
        "db",
        "db1",
        "mydb",
        "db.internal",
        "DB",
        "app",
        "app-db",
        "x_db",
        "localhost",
    ];
    const ADDRS: &[&str] = &[
        "10.0.0.11",
        "10.0.0.12",
        "127.0.0.1",
        "::1",
        "fd00::12",
        "fe80::1%eth0",
    ];
    const SPACES: &[&str] = &[" ", "\t", "  ", " \t "];

    fn random_file(rng: &mut Rng) -> String {
        let mut text = String::new();
        let crlf = rng.next().is_multiple_of(4);
        let count = rng.next() % 12;
        for _ in 0..count {
            let kind = rng.next() % 6;
            let line = match kind {
                0 => String::new(),
                1 => format!("# {} {}", rng.pick(ADDRS), rng.pick(NAMES)),
                _ => {
                    let mut l = format!(
                        "{}{}",
                        rng.pick(SPACES).trim_start_matches(' '),
                        rng.pick(ADDRS)
                    );
                    for _ in 0..=(rng.next() % 3) {
                        l.push_str(rng.pick(SPACES));
                        l.push_str(rng.pick(NAMES));
                    }
                    if rng.next().is_multiple_of(3) {
                        l.push_str(" # note db");
                    }
                    l
                }
            };
            text.push_str(&line);
            text.push_str(if crlf { "\r\n" } else { "\n" });
        }
        if rng.next().is_multiple_of(3) {
            // No final newline.
            while text.ends_with('\n') || text.ends_with('\r') {
                text.pop();
            }
        }
        text
    }

    #[test]
    fn fuzz_hosts_file_editing_changes_only_the_target_mapping() {
        let mut rng = Rng::new(5);
        for case in 0..cases(5000) {
            let text = random_file(&mut rng);
            let name = rng.pick(&["db", "db1", "db.internal", "app"]);
            let target = ip(rng.pick(&["10.0.0.12", "fd00::12", "10.0.0.11"]));
            let out = switch(&text, name, target).unwrap();
            assert_eq!(
                lookup(&out, name),
                Some(target.to_string()),
                "case {case}: {text:?} -> {out:?}"
            );
            // Every other name resolves as before.
            for other in NAMES.iter().filter(|n| !n.eq_ignore_ascii_case(name)) {
                assert_eq!(
                    lookup(&out, other),
                    lookup(&text, other),
                    "case {case}: {other} in {text:?} -> {out:?}"
                );
            }
            // Lines that do not carry the name are kept byte for byte, in order.
            let kept: Vec<&str> = text
                .split_inclusive('\n')
                .filter(|l| !Line::parse(l).has_name(name))
                .collect();
            let mut rest = out.as_str();
            for line in kept {
                let body = line.trim_end_matches(['\r', '\n']);
                let at = rest.find(body).unwrap_or_else(|| {
                    panic!("case {case}: lost {line:?} from {text:?} -> {out:?}")
                });
                rest = &rest[at + body.len()..];
            }
            // Idempotent.
            assert_eq!(switch(&out, name, target).unwrap(), out, "case {case}");
        }
    }

    /// Arbitrary bytes as a hosts file: lookups and switches never panic, and a switch of a
    /// text file always makes the name resolve to the address.
    #[test]
    fn fuzz_hosts_file_editing_on_arbitrary_bytes() {
        let mut rng = Rng::new(6);
        for case in 0..cases(20000) {
            let text = String::from_utf8_lossy(&rng.bytes(300)).into_owned();
            let _ = lookup(&text, "db");
            match switch(&text, "db", ip("10.0.0.12")) {
                Ok(out) => assert_eq!(
                    lookup(&out, "db").as_deref(),
                    Some("10.0.0.12"),
                    "case {case}: {text:?}"
                ),
                Err(EditError::NotText) => assert!(text.contains('\0')),
                Err(e) => panic!("case {case}: {e}"),
            }
        }
    }
}
