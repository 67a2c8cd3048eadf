//! `fence = "stop"` of the `postgres_promote` step: the old primary stopped over SSH with one
//! fixed command (`sudo -n -u postgres pg_ctl stop -D DATA_DIR -m fast -w -t SECS`) that a
//! sudoers rule can allow exactly; its keys, its command lines, and the verdicts on what the
//! stop and the preflight's check of it gave.

use std::path::Path;
use std::time::Duration;

use super::super::{Context, describe_output};
use crate::config::load::{RawSsh, step_ssh};
use crate::error::Problem;
use crate::model::Status;
use crate::postgres::Failure;
use crate::remote::{Exit, Output};
use crate::settings::{SshSettings, format_duration, is_safe_name, parse_duration};

/// Debian's PostgreSQL 15 `pg_ctl`, the default of `pg_ctl`.
pub(super) const DEFAULT_PG_CTL: &str = "/usr/lib/postgresql/15/bin/pg_ctl";

/// Longest the stop of an old primary that does not answer SQL may hold up the promotion: a
/// frozen or dead host does not answer SSH either, and the promotion must not wait for it.
pub(super) const BEST_EFFORT_STOP: Duration = Duration::from_secs(3);

/// What the stop over SSH may take beyond pg_ctl's own wait (`stop_timeout`): the login and
/// pg_ctl's start and exit. The preflight's check gets this beyond the login's timeout.
pub(super) const STOP_SLACK: Duration = Duration::from_secs(5);

/// How `fence = "stop"` stops the old primary: one command on it over SSH, a fixed argument
/// vector that a sudoers rule can allow exactly (see [`stop_line`]).
#[derive(Debug, Clone)]
pub struct Stop {
    /// The old primary's data directory (the same path on every server of the pool).
    pub data_dir: String,
    pub pg_ctl: String,
    /// The user PostgreSQL runs as; pg_ctl runs as this user.
    pub os_user: String,
    /// pg_ctl's wait for the shutdown (`-t`), whole seconds.
    pub timeout: Duration,
    /// How deadpool logs in to the old primary.
    pub ssh: SshSettings,
}

/// The keys that only `fence = "stop"` reads.
#[derive(Debug, Default)]
pub(super) struct RawStop {
    pub data_dir: Option<String>,
    pub pg_ctl: Option<String>,
    pub os_user: Option<String>,
    pub stop_timeout: Option<String>,
    pub ssh: Option<RawSsh>,
}

impl RawStop {
    /// The first of its keys that is set, for the error when the fence is not `stop`.
    pub(super) fn first_given(&self) -> Option<&'static str> {
        [
            ("data_dir", self.data_dir.is_some()),
            ("pg_ctl", self.pg_ctl.is_some()),
            ("os_user", self.os_user.is_some()),
            ("stop_timeout", self.stop_timeout.is_some()),
            ("ssh", self.ssh.is_some()),
        ]
        .into_iter()
        .find_map(|(key, given)| given.then_some(key))
    }
}

/// The stop's keys, validated: paths a sudoers rule can name, a user, pg_ctl's wait, and the
/// SSH login (the step's `ssh` table over `[ssh]`).
pub(super) fn load(keys: RawStop, dir: &Path, defaults: &SshSettings) -> Result<Stop, Problem> {
    let data_dir = keys.data_dir.ok_or_else(|| {
        Problem::at(
            "data_dir",
            "missing: fence = \"stop\" needs the old primary's data directory, e.g. \"/var/lib/postgresql/15/main\"",
        )
    })?;
    let data_dir = rule_path("data_dir", data_dir)?;
    let pg_ctl = rule_path(
        "pg_ctl",
        keys.pg_ctl.unwrap_or_else(|| DEFAULT_PG_CTL.to_string()),
    )?;
    let os_user = keys.os_user.unwrap_or_else(|| "postgres".to_string());
    if !is_safe_name(&os_user) {
        return Err(Problem::at(
            "os_user",
            format!("`{os_user}`: expected a user name of letters, digits, `-`, `_`, `.`"),
        ));
    }
    let text = keys.stop_timeout.as_deref().unwrap_or("10s");
    let timeout = parse_duration(text).map_err(|e| Problem::at("stop_timeout", e))?;
    if timeout.subsec_nanos() != 0 || !(1..=120).contains(&timeout.as_secs()) {
        return Err(Problem::at(
            "stop_timeout",
            format!("got \"{text}\", expected whole seconds from 1s to 120s (pg_ctl -t)"),
        ));
    }
    let ssh = step_ssh(dir, keys.ssh, defaults)?;
    if timeout >= ssh.command_timeout {
        return Err(Problem::at(
            "stop_timeout",
            format!(
                "{} is not shorter than the SSH command_timeout ({}), which would end pg_ctl's wait first: lower stop_timeout, or raise command_timeout in the step's ssh table",
                format_duration(timeout),
                format_duration(ssh.command_timeout)
            ),
        ));
    }
    Ok(Stop {
        data_dir,
        pg_ctl,
        os_user,
        timeout,
        ssh,
    })
}

/// A path that goes word for word into the command and its sudoers rule: absolute, and
/// nothing a shell or sudoers would read as more than one plain word.
fn rule_path(key: &str, path: String) -> Result<String, Problem> {
    let plain = path.starts_with('/')
        && path.len() > 1
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b));
    if plain {
        Ok(path)
    } else {
        Err(Problem::at(
            key,
            format!(
                "`{path}`: expected an absolute path of letters, digits and `/._+-` (it goes into a sudoers rule as it is)"
            ),
        ))
    }
}

/// Whether pg_ctl goes through sudo, how its stop and the preflight's question read.
impl Stop {
    /// Through sudo unless deadpool logs in as `os_user` itself.
    pub(super) fn through_sudo(&self) -> bool {
        self.ssh.user != self.os_user
    }

    /// The stop as it runs on the old primary.
    pub(super) fn command(&self) -> String {
        stop_line(self, false)
    }

    /// The preflight's question on the old primary: whether sudo runs the stop without a
    /// password (`sudo -n -l` with its argv: exit 0 when allowed); logged in as `os_user`,
    /// whether pg_ctl finds the running server in `data_dir`.
    pub(super) fn check_command(&self) -> String {
        if self.through_sudo() {
            stop_line(self, true)
        } else {
            crate::remote::argv_line(&[&self.pg_ctl, "status", "-D", &self.data_dir])
        }
    }

    /// The sudoers rule that allows exactly the stop, and nothing else.
    pub(super) fn sudoers_line(&self) -> String {
        let words = pg_ctl_stop(self);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        format!(
            "{} ALL=({}) NOPASSWD: {}",
            self.ssh.user,
            self.os_user,
            crate::remote::argv_line(&words)
        )
    }

    /// How a person starts the stopped server again, on it.
    pub(super) fn start_command(&self) -> String {
        let start = crate::remote::argv_line(&[&self.pg_ctl, "start", "-D", &self.data_dir]);
        format!("sudo -u {} {start}", self.os_user)
    }
}

/// pg_ctl's words of the stop: `PG_CTL stop -D DATA_DIR -m fast -w -t SECS`.
fn pg_ctl_stop(stop: &Stop) -> Vec<String> {
    let secs = stop.timeout.as_secs().to_string();
    [
        stop.pg_ctl.as_str(),
        "stop",
        "-D",
        &stop.data_dir,
        "-m",
        "fast",
        "-w",
        "-t",
        &secs,
    ]
    .map(str::to_string)
    .to_vec()
}

/// The stop's command line (pure, for tests): `sudo -n -u OS_USER PG_CTL stop -D DATA_DIR
/// -m fast -w -t SECS`, a fixed argument vector for a sudoers rule to name, every word
/// shell-quoted; bare pg_ctl when the SSH user is `os_user`. `list`: `sudo -n -l -u ...`,
/// which runs nothing and exits 0 only when sudo would run the stop without a password.
fn stop_line(stop: &Stop, list: bool) -> String {
    let mut words: Vec<&str> = Vec::new();
    if stop.through_sudo() {
        words.extend(["sudo", "-n"]);
        if list {
            words.push("-l");
        }
        words.extend(["-u", &stop.os_user]);
    }
    let pg_ctl = pg_ctl_stop(stop);
    words.extend(pg_ctl.iter().map(String::as_str));
    crate::remote::argv_line(&words)
}

/// The end of the message when the old primary is stopped and the standby not promoted.
pub(super) fn stopped_advice(stop: &Stop, ctx: &Context) -> String {
    let (old, new) = (ctx.old_primary, ctx.new_primary);
    format!(
        "the old primary {old} is STOPPED and {new} was NOT promoted: start {old} again there with `{}` (or through its service), or promote {new} as it is with `deadpool promote --force {} {new}`",
        stop.start_command(),
        ctx.pool.name
    )
}

/// Whether the stop over SSH fenced the old primary (pure, for tests): pg_ctl exited 0 and
/// a new connection (`connect_after`, tried only then) finds nothing there. `Err`: what
/// failed and what to fix.
pub(super) fn stop_outcome(
    stop: &Stop,
    host: &str,
    out: &Output,
    connect_after: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), String> {
    let detail = describe_output(out);
    let what = match &out.exit {
        Exit::Code(0) => match connect_after() {
            Err(Failure::Down(_)) => return Ok(()),
            Ok(()) => "pg_ctl stop exited 0 but the server still accepts connections".to_string(),
            Err(f) => format!("pg_ctl stop exited 0 but the server still answers ({f})"),
        },
        Exit::Unreachable(_) | Exit::NotStarted(_) => {
            format!("cannot log in over SSH as {} ({detail})", stop.ssh.user)
        }
        _ => format!("`{}` failed ({detail})", stop.command()),
    };
    Err(format!(
        "could not stop the old primary {host}: {what}; {}",
        stop_fix(stop, host, out)
    ))
}

/// What a person does about a stop, or the preflight's check of it, that failed on `host`
/// (pure, for tests).
fn stop_fix(stop: &Stop, host: &str, out: &Output) -> String {
    let said = format!("{}{}", out.stdout, out.stderr);
    let said = said.trim();
    // sudo -n -l says nothing when it would refuse; sudo -n says why it did.
    let by_sudo = stop.through_sudo()
        && (said.is_empty()
            || said.starts_with("sudo:")
            || said.starts_with("Sorry")
            || said.contains("not allowed"));
    let (dir, pg_ctl) = (&stop.data_dir, &stop.pg_ctl);
    match &out.exit {
        Exit::Unreachable(_) | Exit::NotStarted(_) => format!(
            "let deadpool log in to {host} over SSH as {} (its key authorized there, the host in known_hosts), or set fence = \"read_only\"",
            stop.ssh.user
        ),
        Exit::TimedOut | Exit::Signal(_) => format!(
            "pg_ctl did not finish in time: look at the server on {host}; pg_ctl waits stop_timeout ({}) within the step's timeout",
            format_duration(stop.timeout)
        ),
        Exit::Code(0) => format!(
            "check that data_dir ({dir}) is the data directory of the server on {host} (SHOW data_directory)"
        ),
        Exit::Code(127) if stop.through_sudo() => {
            format!("install sudo on {host}, and check pg_ctl ({pg_ctl}) there")
        }
        Exit::Code(_) if by_sudo => format!(
            "allow it in /etc/sudoers.d/deadpool on every server of the pool: {}",
            stop.sudoers_line()
        ),
        Exit::Code(_) => format!(
            "check data_dir ({dir}) and pg_ctl ({pg_ctl}) on {host}: pg_ctl must find the running server there"
        ),
    }
}

/// The preflight's verdict on stopping the old primary, from the SSH check on it (pure, for
/// tests). `needed`: the old primary answers SQL, so the promotion will stop it and a stop
/// that cannot run blocks it; otherwise the promotion goes around it, and the stop is at
/// most a try. `data_directory`: the server's own, when the admin account may read it.
pub(super) fn stop_preflight_verdict(
    stop: &Stop,
    host: &str,
    needed: bool,
    out: &Output,
    data_directory: Option<&str>,
) -> (Status, String) {
    let detail = describe_output(out);
    match (&out.exit, needed) {
        (Exit::Code(0), _) => {
            let ok = if stop.through_sudo() {
                format!(
                    "sudo lets {} stop the old primary as {} without a password: {}",
                    stop.ssh.user,
                    stop.os_user,
                    stop.command()
                )
            } else {
                format!(
                    "{} can stop the old primary itself ({detail}): {}",
                    stop.os_user,
                    stop.command()
                )
            };
            match data_directory {
                Some(d) if d != stop.data_dir => (
                    Status::Warning,
                    format!(
                        "{ok}; but its data_directory is {d}, not data_dir {}: pg_ctl finds the server only through data_dir (a configuration directory naming {d} does too)",
                        stop.data_dir
                    ),
                ),
                _ => (Status::Ok, ok),
            }
        }
        (Exit::Unreachable(_) | Exit::TimedOut, false) => (
            Status::Ok,
            format!("old primary {host} unreachable over SSH too ({detail})"),
        ),
        (_, false) => (
            Status::Warning,
            format!(
                "the old primary's stop cannot run ({detail}), though the promotion only tries it while it goes around {host}: {}",
                stop_fix(stop, host, out)
            ),
        ),
        (_, true) => (
            Status::Critical,
            format!(
                "the old primary {host} answers and could not be stopped: `{}` gave {detail}; {}",
                stop.check_command(),
                stop_fix(stop, host, out)
            ),
        ),
    }
}

/// The note on the stop tried on an old primary that does not answer SQL (pure, for
/// tests): whatever it gave, the promotion goes on.
pub(super) fn best_effort_note(host: &str, command: &str, out: &Output) -> String {
    match &out.exit {
        Exit::Code(0) => format!("old primary {host} stopped over SSH: {command}"),
        _ => format!(
            "old primary {host} not stopped over SSH (at most {}): {}; promoting without it",
            format_duration(BEST_EFFORT_STOP),
            describe_output(out)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> SshSettings {
        SshSettings {
            user: "deadpool".into(),
            port: 22,
            auth: crate::settings::SshAuth::Agent,
            known_hosts: "/nonexistent/known_hosts".into(),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(30),
            sudo: false,
        }
    }

    fn stop_as(ssh_user: &str) -> Stop {
        Stop {
            data_dir: "/var/lib/postgresql/15/main".into(),
            pg_ctl: DEFAULT_PG_CTL.into(),
            os_user: "postgres".into(),
            timeout: Duration::from_secs(10),
            ssh: SshSettings {
                user: ssh_user.into(),
                ..defaults()
            },
        }
    }

    #[test]
    fn the_stop_is_one_fixed_argv_and_its_sudoers_rule_names_it() {
        let pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/postgresql/15/main -m fast -w -t 10";
        let stop = stop_as("deadpool");
        assert_eq!(
            stop_line(&stop, false),
            format!("sudo -n -u postgres {pg_ctl}")
        );
        assert_eq!(stop.command(), format!("sudo -n -u postgres {pg_ctl}"));
        assert_eq!(
            stop.check_command(),
            format!("sudo -n -l -u postgres {pg_ctl}")
        );
        assert_eq!(
            stop.sudoers_line(),
            format!("deadpool ALL=(postgres) NOPASSWD: {pg_ctl}")
        );
        assert_eq!(
            stop.start_command(),
            "sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl start -D /var/lib/postgresql/15/main"
        );
        // Logged in as the server's own user: no sudo at all.
        let own = stop_as("postgres");
        assert_eq!(own.command(), pg_ctl);
        assert_eq!(
            own.check_command(),
            "/usr/lib/postgresql/15/bin/pg_ctl status -D /var/lib/postgresql/15/main"
        );
        // Every word is shell-quoted (load refuses such paths, for the sudoers rule).
        let odd = Stop {
            data_dir: "/srv/pg data$(id)".into(),
            ..stop_as("deadpool")
        };
        assert_eq!(
            odd.command(),
            "sudo -n -u postgres /usr/lib/postgresql/15/bin/pg_ctl stop -D '/srv/pg data$(id)' -m fast -w -t 10"
        );
    }

    fn output(exit: Exit, stderr: &str) -> Output {
        Output {
            exit,
            stdout: String::new(),
            stderr: stderr.into(),
            duration: Duration::from_millis(20),
        }
    }

    fn server_error(message: &str) -> Failure {
        Failure::Server(crate::postgres::ServerError {
            severity: "FATAL".into(),
            code: "57P03".into(),
            message: message.into(),
        })
    }

    #[test]
    fn only_a_stop_that_exits_0_and_leaves_nothing_listening_fences() {
        let stop = stop_as("deadpool");
        let rule = stop.sudoers_line();
        let down = || Err(Failure::Down("10.0.0.1:5432: Connection refused".into()));
        let never = || -> Result<(), Failure> { panic!("verified after a failed stop") };
        assert_eq!(
            stop_outcome(&stop, "10.0.0.1", &output(Exit::Code(0), ""), down),
            Ok(())
        );
        // (output, the new connection when exit 0, words of the error)
        type After = Option<Result<(), Failure>>;
        let table: Vec<(Output, After, Vec<&str>)> = vec![
            (
                output(Exit::Code(0), ""),
                Some(Ok(())),
                vec!["still accepts connections", "check that data_dir"],
            ),
            (
                output(Exit::Code(0), ""),
                Some(Err(server_error("the database system is shutting down"))),
                vec!["still answers", "shutting down"],
            ),
            (
                output(Exit::Code(1), "sudo: a password is required\n"),
                None,
                vec![
                    "could not stop the old primary 10.0.0.1",
                    "a password is required",
                    &rule,
                ],
            ),
            (
                output(
                    Exit::Code(1),
                    "Sorry, user deadpool is not allowed to execute '/usr/lib/postgresql/15/bin/pg_ctl stop' as postgres on db1.\n",
                ),
                None,
                vec!["/etc/sudoers.d/deadpool", &rule],
            ),
            (
                output(
                    Exit::Code(1),
                    "pg_ctl: PID file \"/var/lib/postgresql/15/main/postmaster.pid\" does not exist\n",
                ),
                None,
                vec![
                    "PID file",
                    "check data_dir (/var/lib/postgresql/15/main) and pg_ctl",
                ],
            ),
            (
                output(Exit::Code(127), "sh: 1: sudo: not found\n"),
                None,
                vec!["install sudo"],
            ),
            (
                output(
                    Exit::Unreachable("10.0.0.1: ssh port 22: timed out".into()),
                    "",
                ),
                None,
                vec![
                    "cannot log in over SSH as deadpool",
                    "fence = \"read_only\"",
                ],
            ),
            (
                output(
                    Exit::NotStarted("10.0.0.1: login as deadpool failed".into()),
                    "",
                ),
                None,
                vec!["cannot log in over SSH", "known_hosts"],
            ),
            (
                output(Exit::TimedOut, ""),
                None,
                vec!["did not finish in time", "stop_timeout (10s)"],
            ),
        ];
        for (out, after, words) in table {
            let verdict = match after {
                Some(after) => stop_outcome(&stop, "10.0.0.1", &out, || after),
                None => stop_outcome(&stop, "10.0.0.1", &out, never),
            };
            let why = verdict.expect_err(&format!("{out:?}"));
            for w in &words {
                assert!(why.contains(w), "{out:?}: {why}");
            }
        }
    }

    #[test]
    fn the_preflight_blocks_only_a_stop_the_promotion_needs() {
        let stop = stop_as("deadpool");
        let rule = stop.sudoers_line();
        let unreachable = || Exit::Unreachable("10.0.0.1: ssh port 22: timed out".into());
        let main = Some("/var/lib/postgresql/15/main");
        // (needed, output, data_directory, status, words)
        type Row<'a> = (bool, Output, Option<&'a str>, Status, Vec<&'a str>);
        let table: Vec<Row> = vec![
            (
                true,
                output(Exit::Code(0), ""),
                None,
                Status::Ok,
                vec!["sudo lets deadpool stop", "sudo -n -u postgres"],
            ),
            (
                true,
                output(Exit::Code(0), ""),
                main,
                Status::Ok,
                vec!["without a password"],
            ),
            (
                false,
                output(Exit::Code(0), ""),
                None,
                Status::Ok,
                vec!["without a password"],
            ),
            (
                true,
                output(Exit::Code(0), ""),
                Some("/srv/pg15"),
                Status::Warning,
                vec!["data_directory is /srv/pg15"],
            ),
            // sudo -n -l refuses in silence; a rule that wants a password says so.
            (
                true,
                output(Exit::Code(1), ""),
                None,
                Status::Critical,
                vec![
                    "answers and could not be stopped",
                    "sudo -n -l -u postgres",
                    &rule,
                ],
            ),
            (
                true,
                output(Exit::Code(1), "sudo: a password is required\n"),
                None,
                Status::Critical,
                vec![&rule],
            ),
            (
                true,
                output(unreachable(), ""),
                None,
                Status::Critical,
                vec!["log in to 10.0.0.1 over SSH"],
            ),
            (
                false,
                output(unreachable(), ""),
                None,
                Status::Ok,
                vec!["unreachable over SSH too"],
            ),
            (
                false,
                output(Exit::TimedOut, ""),
                None,
                Status::Ok,
                vec!["unreachable over SSH too"],
            ),
            (
                false,
                output(Exit::Code(1), ""),
                None,
                Status::Warning,
                vec!["only tries it", &rule],
            ),
            (
                false,
                output(Exit::NotStarted("login refused".into()), ""),
                None,
                Status::Warning,
                vec!["log in to 10.0.0.1"],
            ),
        ];
        for (needed, out, data_directory, status, words) in table {
            let (got, message) =
                stop_preflight_verdict(&stop, "10.0.0.1", needed, &out, data_directory);
            assert_eq!(got, status, "{needed} {out:?}: {message}");
            for w in &words {
                assert!(message.contains(w), "{needed} {out:?}: {message}");
            }
        }
        // As the server's own user, pg_ctl status answers the question.
        let own = stop_as("postgres");
        let (status, message) = stop_preflight_verdict(
            &own,
            "10.0.0.1",
            true,
            &output(Exit::Code(3), "pg_ctl: no server running\n"),
            None,
        );
        assert_eq!(status, Status::Critical);
        assert!(
            message.contains("pg_ctl status -D") && message.contains("check data_dir"),
            "{message}"
        );
        let (status, message) =
            stop_preflight_verdict(&own, "10.0.0.1", true, &output(Exit::Code(0), ""), None);
        assert_eq!(status, Status::Ok, "{message}");
        assert!(
            message.contains("postgres can stop the old primary itself"),
            "{message}"
        );
    }

    #[test]
    fn the_stop_tried_around_a_silent_old_primary_is_a_note() {
        let command = stop_as("deadpool").command();
        let note = best_effort_note("10.0.0.1", &command, &output(Exit::Code(0), ""));
        assert_eq!(
            note,
            format!("old primary 10.0.0.1 stopped over SSH: {command}")
        );
        let out = output(
            Exit::Unreachable("10.0.0.1: ssh port 22: timed out".into()),
            "",
        );
        let note = best_effort_note("10.0.0.1", &command, &out);
        assert!(
            note.contains("not stopped over SSH (at most 3s)")
                && note.contains("timed out")
                && note.contains("promoting without it"),
            "{note}"
        );
    }
}
