//! Small text helpers shared by reports and captured output.

/// Whether a character of text from elsewhere (a program's output, a server's message, a
/// remote host's error) may reach a person's terminal: every control character but newline
/// and tab is held back. ESC and the C1 controls start terminal escape sequences (colours,
/// cursor moves, OSC window titles and clipboard writes), a carriage return or backspace
/// overwrites what was printed before.
fn printable_char(c: char) -> bool {
    matches!(c, '\n' | '\t') || !c.is_control()
}

/// Text from elsewhere made safe to print for a person, lines kept ([`printable_char`]):
/// the one sanitiser behind `history`, the report text, `promote`'s display and the log.
pub fn printable(s: &str) -> String {
    s.chars().filter(|&c| printable_char(c)).collect()
}

/// Makes a message safe for a one-line report: no line breaks, no control characters
/// ([`printable_char`]), no `|` (Nagios reads everything after `|` as performance data).
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push('/'),
            '\n' | '\r' | '\t' => out.push(' '),
            c if !printable_char(c) => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    truncate(trimmed, 600)
}

/// Cuts a string to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// The first line of a program's output, made report-safe.
pub fn first_line(output: &str) -> String {
    one_line(output.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

/// "3s", "2m 5s", "1h 2m", "3d 4h": an age or duration for people.
pub fn human_secs(secs: f64) -> String {
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Splits a command line into words the way a POSIX shell would for plain words and quotes,
/// without expanding anything. Used for commands that run without a shell.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes a value for a POSIX shell so that it always arrives as one word of data.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_removes_pipes_and_breaks() {
        assert_eq!(one_line("a|b\nc\td\u{7}"), "a/b c d");
    }

    #[test]
    fn printable_keeps_lines_and_drops_terminal_controls() {
        let csi = "\u{1b}[2J\u{1b}[31mred\u{1b}[0m";
        let osc = "\u{1b}]0;owned\u{7}\u{1b}]52;c;ZWNobyBoaQ==\u{1b}\\";
        let c1 = "\u{9b}2J\u{9d}0;t\u{9c}";
        let text = format!("a\tb\n{csi}\n{osc}\n{c1}\nover\rwrite\u{8}\u{7f}");
        let shown = printable(&text);
        assert_eq!(
            shown,
            "a\tb\n[2J[31mred[0m\n]0;owned]52;c;ZWNobyBoaQ==\\\n2J0;t\noverwrite"
        );
        assert!(!shown.contains('\u{1b}'));
        assert_eq!(printable("ünïcode ok\n"), "ünïcode ok\n");
    }

    #[test]
    fn split_words_handles_quotes() {
        assert_eq!(
            split_words(r#"check -H 'a b' "c \"d\"" e\ f"#).unwrap(),
            vec!["check", "-H", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn shell_quote_makes_data_of_metacharacters() {
        assert_eq!(shell_quote("10.0.0.1"), "10.0.0.1");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$(rm -rf /); x"), "'$(rm -rf /); x'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn human_secs_reads_well() {
        assert_eq!(human_secs(3.25), "3.2s");
        assert_eq!(human_secs(75.0), "1m 15s");
        assert_eq!(human_secs(90000.0), "1d 1h");
    }
}

/// `2026-11-26 06:01:02Z` from milliseconds since the epoch (UTC; no time zone database).
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::civil::date_of_day(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(
            super::format_time(1_795_651_262_000),
            "2026-11-26 00:01:02Z"
        );
        assert_eq!(super::format_time(951_782_400_000), "2000-02-29 00:00:00Z");
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::fuzz::{Rng, cases};

    /// Whatever a plugin prints, the message that reaches a report is one line, without `|`
    /// or control characters, and bounded.
    #[test]
    fn fuzz_plugin_output_handling() {
        let mut rng = Rng::new(2);
        for case in 0..cases(20000) {
            let mut bytes = rng.bytes(2000);
            if rng.below(2) == 0 {
                bytes.extend_from_slice("|OK - ünïcode\r\n\t|".as_bytes());
            }
            let text = String::from_utf8_lossy(&bytes);
            for line in [first_line(&text), one_line(&text)] {
                assert!(!line.contains('|'), "case {case}: {line:?}");
                assert!(!line.chars().any(char::is_control), "case {case}: {line:?}");
                assert!(line.chars().count() <= 601, "case {case}");
            }
            let shown = printable(&text);
            assert!(
                !shown
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "case {case}: {shown:?}"
            );
            let _ = split_words(&text);
            let quoted = shell_quote(&text);
            assert!(
                quoted.starts_with('\'')
                    || quoted
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)),
                "case {case}"
            );
        }
    }
}
