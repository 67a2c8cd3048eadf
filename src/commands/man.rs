//! `deadpool man`: prints the man page (roff), generated from the clap definition in
//! `cli.rs`. One page holds every subcommand, each with its synopsis and options, so the
//! package installs a single deadpool(1) that never falls behind the real options; the
//! sections clap knows nothing of (EXIT STATUS, ENVIRONMENT, FILES, SEE ALSO) are written
//! here, and the whole page is tidied so that `mandoc -Tlint` and `groff -ww` are silent.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::cli::Cli;
use crate::error::Outcome;

pub fn run() -> Result<Outcome> {
    let page = page().context("rendering the man page")?;
    std::io::stdout()
        .lock()
        .write_all(page.as_bytes())
        .context("writing the man page to stdout")?;
    Ok(Outcome::Done)
}

/// clap_mangen's own page only points at one page per subcommand (deadpool-tick(1), ...);
/// this one puts them all in a COMMANDS section instead, built from clap_mangen's pieces.
fn page() -> std::io::Result<String> {
    // Taken before clap builds it, so the implicit `help` subcommand is not listed.
    let cli = Cli::command();
    let top = Man::new(cli.clone())
        .title("DEADPOOL")
        .date(env!("DEADPOOL_DATE"))
        .source(format!("deadpool {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    // man and whatis read the .TH line first; the preamble only has to precede its first use.
    let head = render(|w| top.render_title(w))?;
    let (title, preamble): (Vec<&str>, Vec<&str>) =
        head.lines().partition(|l| l.starts_with(".TH "));
    let mut page: String = title
        .iter()
        .chain(&preamble)
        .map(|l| format!("{l}\n"))
        .collect();
    for part in [
        render(|w| top.render_name_section(w))?,
        render(|w| top.render_synopsis_section(w))?,
        render(|w| top.render_description_section(w))?,
        render(|w| top.render_options_section(w))?,
    ] {
        page.push_str(&without_preamble(&part));
    }

    let mut commands = Roff::new();
    commands.control("SH", ["COMMANDS"]);
    page.push_str(&commands.to_roff());
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{} {}", cli.get_name(), sub.get_name());
        let mut heading = Roff::new();
        heading.control("SS", [name.as_str()]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            heading.text([roman(about.to_string())]);
        }
        page.push_str(&heading.to_roff());
        let man = Man::new(sub.clone().bin_name(&name));
        // The subcommand's synopsis and options, without their own .SH headings.
        for part in [
            render(|w| man.render_synopsis_section(w))?,
            render(|w| man.render_options_section(w))?,
        ] {
            let body = without_preamble(&part);
            let body = body.lines().filter(|l| !l.starts_with(".SH "));
            let mut roff = Roff::new();
            roff.control("PP", []);
            page.push_str(&roff.to_roff());
            for line in body {
                page.push_str(line);
                page.push('\n');
            }
        }
    }
    page.push_str(EXTRA_SECTIONS);
    page.push_str(&without_preamble(&render(|w| {
        top.render_version_section(w)
    })?));
    page.push_str(SEE_ALSO);
    Ok(tidy(&page))
}

/// What the command-line definition cannot say: exit codes, environment, files.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
Every command but
.B report \-\-nagios
exits with:
.TP
.B 0
Done (also: a promote to the server already active, a resume of a pool not paused).
.TP
.B 1
It ran, and something failed or needs a person:
.B tick
ran a chain that failed, found an interrupted failover or could not process a pool;
.B promote
failed or was refused;
.B reset
was refused;
.B promote
or
.B reset
was answered no;
.BR promote ,
.BR reset ,
.B pause
or
.B resume
found the instance lock still held;
.B hosts
printed an ERROR line
.RB ( verify :
the name does not resolve to the address).
.TP
.B 2
Bad usage or an invalid configuration: nothing was changed.
.PP
.B report \-\-nagios
exits with the Nagios plugin codes, usage errors and an unreadable configuration or
database included (never 2 for those):
.TP
.B 0
OK
.TP
.B 1
WARNING
.TP
.B 2
CRITICAL
.TP
.B 3
UNKNOWN
.SH ENVIRONMENT
.TP
.B DEADPOOL_CONFIG
The config directory when
.B \-\-config
is not given (default
.IR /etc/deadpool ).
.TP
.B DEADPOOL_LOG
The log level on stderr when neither
.B \-v
nor
.B \-q
is given:
.BR error ,
.B warn
(the default),
.B info
or
.BR debug .
.TP
.B NO_COLOR
When set and not empty, the report is never in colour (neither is it when stdout is
not a terminal, or with
.BR TERM=dumb ).
.TP
.B JOURNAL_STREAM
Set by systemd: when stderr is the stream it names, every log line starts with its
journald priority
.RB ( <3>
to
.BR <7> ).
.TP
.B SYSTEMD_UNIT_PATH
Where
.B check\-config
and
.B tick
look for the timer that runs this config dir, as systemd does; by default the
system unit directories.
.TP
.B SUDO_USER
Read only when the real uid is root and the parent process is
.BR sudo :
then
.BR promote ,
.BR reset ,
.B pause
and
.B resume
record
.RI "root via sudo by " SUDO_USER .
Otherwise the recorded person is the user name of the real uid;
.B USER
is never read for it.
.SH FILES
.TP
.I /etc/deadpool/deadpool.toml
Instance settings.
.TP
.I /etc/deadpool/pools/*.toml
One pool per file; the pool's name is the file's stem unless
.B name
is set.
.TP
.I /etc/deadpool/plugins/
Monitor and step plugins; a relative
.B command
is looked up here first.
.TP
.I /etc/deadpool/known_hosts
SSH host keys of the client hosts.
.TP
.I /var/lib/deadpool/deadpool.db
The state: pools, monitor and readiness results, history (SQLite).
.TP
.I /var/lib/deadpool/deadpool.lock
The instance lock, held by a tick, promote, reset, pause and resume.
.TP
.I /var/lib/deadpool/children/
One file per process group of a local step or check while it runs; the next run ends
the groups a killed deadpool left behind.
.TP
.I /var/lib/prometheus/node\-exporter/deadpool.prom
The metrics textfile, when
.B prometheus_textfile
names it.
.TP
.IR /lib/systemd/system/deadpool.service ", " deadpool.timer
One tick every five seconds for the default instance;
.I deadpool@.service
and
.I deadpool@.timer
for the instance NAME in
.I /etc/deadpool\-NAME
and
.IR /var/lib/deadpool\-NAME .
The timer's
.B OnUnitInactiveSec
must be
.BR tick_interval ;
.B check\-config
refuses one over three times longer, with which no pool ever fails over.
"#;

const SEE_ALSO: &str = r#".SH "SEE ALSO"
.BR systemd.timer (5),
.BR systemd.exec (5),
.BR systemd.time (7),
.BR journalctl (1),
.BR sqlite3 (1),
.BR ssh\-keyscan (1),
.BR hosts (5),
and
.I /usr/share/doc/deadpool/README.md
for the configuration reference, the decision rules and the plugin contracts.
"#;

/// Makes the roff lint-clean: no trailing white space, no paragraph macro that
/// produces nothing (clap's `.PP` before `.TP`, `.br` around a blank line), an explicit
/// `.sp` for a blank line, and text lines of at most 80 bytes.
fn tidy(page: &str) -> String {
    let is_break = |l: &str| l.is_empty() || l == ".PP" || l == ".br" || l == ".sp";
    let starts_block = |l: &str| {
        [".PP", ".TP", ".SH ", ".SS ", ".IP", ".sp", ".br"]
            .iter()
            .any(|m| l == m.trim_end() || l.starts_with(m))
    };
    let lines: Vec<&str> = page.lines().map(str::trim_end).collect();
    let mut kept: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_break(line) {
            // A run of breaks: one `.sp` if it held a blank line (a paragraph gap), else
            // the last `.PP`; none before a macro that starts its own block.
            let start = i;
            while i < lines.len() && is_break(lines[i]) {
                i += 1;
            }
            let run = &lines[start..i];
            let next = lines.get(i).copied();
            if next.is_none_or(starts_block) {
                continue;
            }
            if run.contains(&"") || run.contains(&".sp") {
                kept.push(".sp".to_string());
            } else if run.contains(&".PP") {
                kept.push(".PP".to_string());
            } else {
                kept.push(".br".to_string());
            }
            continue;
        }
        if line.starts_with('.') || line.starts_with('\'') {
            kept.push(line.to_string());
        } else {
            kept.extend(wrap(line, 80));
        }
        i += 1;
    }
    let mut out = kept.join("\n");
    out.push('\n');
    out
}

/// A roff text line cut at spaces into lines of at most `width` bytes (a word longer than
/// that stays whole). A piece that would start with `.` or `'` (a request) gets `\&`.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while rest.len() > width {
        // The last unescaped space within the width.
        let cut = rest[..=width]
            .char_indices()
            .filter(|(i, c)| *c == ' ' && *i > 0 && !rest[..*i].ends_with('\\'))
            .map(|(i, _)| i)
            .next_back();
        let Some(cut) = cut else { break };
        out.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    out.push(rest.to_string());
    out.into_iter()
        .enumerate()
        .map(|(n, l)| {
            if n > 0 && (l.starts_with('.') || l.starts_with('\'')) {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect()
}

fn render(part: impl Fn(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<String> {
    let mut out = Vec::new();
    part(&mut out)?;
    String::from_utf8(out).map_err(std::io::Error::other)
}

/// Every rendered piece starts with the same two lines defining the apostrophe string; the
/// page needs them once.
fn without_preamble(part: &str) -> String {
    part.lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_cuts_at_spaces_and_guards_requests() {
        let line = format!("{}.not a request and more words here", "word ".repeat(16));
        let lines = wrap(&line, 80);
        assert!(lines.iter().all(|l| l.len() <= 80), "{lines:?}");
        assert_eq!(lines.join(" ").replace("\\&", ""), line);
        assert!(lines[1].starts_with("\\&.not"), "{lines:?}");
        let long = "x".repeat(100);
        assert_eq!(wrap(&long, 80), vec![long.clone()]);
    }

    #[test]
    fn tidy_drops_empty_paragraphs() {
        let page = ".SH A\ntext \n.PP\n.TP\nitem\n.br\n\n.br\nmore\n.PP\n.SH B\n";
        assert_eq!(tidy(page), ".SH A\ntext\n.TP\nitem\n.sp\nmore\n.SH B\n");
    }
}
