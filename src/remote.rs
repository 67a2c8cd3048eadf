//! Running commands, locally and over SSH. Local children get their own process group, a
//! deadline, and capped output capture; on timeout the whole group is killed, so nothing a
//! step started survives it, and they die with deadpool if it is killed. Remote commands run over one SSH runner: TCP connect timeout,
//! handshake and session timeouts, host keys always checked against `known_hosts`, the
//! command itself bounded by `timeout` on the remote side and by a deadline here. Every
//! remote command line is built here, with every value shell-quoted.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use crate::output::{Capped, Exit, Output};
use crate::settings::{Host, SshSettings};
use crate::text::shell_quote;

/// Runs `argv` with extra environment, no stdin, and a hard deadline. Never hangs: after the
/// main process ends (or is killed) its process group is killed too. Its output is read on
/// this thread as it comes; pipes that a grandchild which escaped the group (`setsid`) still
/// holds open are read for [`OUTPUT_GRACE`] more and then closed on our side, with
/// everything written until then kept.
pub fn run_local(argv: &[String], env: &[(String, String)], timeout: Duration) -> Output {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return not_started("empty command", started);
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(&format!("{program}: {e}"), started),
    };
    let pgid = child.id() as i32;
    // Until the group is killed below; a run after a SIGKILL of deadpool ends it.
    let _record = crate::children::Record::new(pgid);
    let mut pipes = Pipes::new(child.stdout.take(), child.stderr.take());
    let deadline = started + timeout;
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match (status.code(), status.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(s)) => Exit::Signal(s),
                    (None, None) => Exit::Code(-1),
                };
            }
            Ok(None) if Instant::now() >= deadline => {
                kill_group(pgid);
                let _ = child.wait();
                break Exit::TimedOut;
            }
            Ok(None) => pipes.read_for(Duration::from_millis(5)),
            Err(e) => {
                kill_group(pgid);
                let _ = child.wait();
                break Exit::NotStarted(format!("waiting for {program}: {e}"));
            }
        }
    };
    let duration = started.elapsed();
    // Whatever the step left running in its group goes with it.
    kill_group(pgid);
    pipes.read_until(Instant::now() + OUTPUT_GRACE);
    let [stdout, stderr] = pipes.text();
    Output {
        exit,
        stdout,
        stderr,
        duration,
    }
}

/// The child gets SIGKILL when deadpool dies, however it dies (a SIGKILL outside systemd
/// leaves no one to kill the group): a step must not go on acting while the next tick
/// already reports its chain interrupted. The signal comes when the spawning thread ends;
/// [`run_local`] waits for its child on that thread. What the child started itself is
/// ended by the next run ([`crate::children`]).
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // deadpool died between fork and prctl: nothing would ever send the signal.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

fn not_started(message: &str, started: Instant) -> Output {
    Output {
        exit: Exit::NotStarted(message.to_string()),
        stdout: String::new(),
        stderr: String::new(),
        duration: started.elapsed(),
    }
}

/// How long output is still read after the program ended, from pipes something else holds
/// open.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// A child's stdout and stderr, read without threads: poll(2) says which has something, one
/// read then cannot block. A pipe is closed (dropped) at its end of file, and both when
/// [`Pipes::text`] takes what was read.
struct Pipes {
    open: [Option<std::fs::File>; 2],
    kept: [Capped; 2],
}

impl Pipes {
    fn new(
        stdout: Option<std::process::ChildStdout>,
        stderr: Option<std::process::ChildStderr>,
    ) -> Pipes {
        let file = |fd: std::os::fd::OwnedFd| std::fs::File::from(fd);
        Pipes {
            open: [
                stdout.map(|s| file(s.into())),
                stderr.map(|s| file(s.into())),
            ],
            kept: [Capped::default(), Capped::default()],
        }
    }

    /// Reads whatever comes within `limit` (returns sooner when something came).
    fn read_for(&mut self, limit: Duration) {
        use std::os::fd::AsRawFd;
        let mut fds: Vec<libc::pollfd> = (self.open.iter().flatten())
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = limit.as_millis().clamp(0, 1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that poll may write.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if ready <= 0 {
            if fds.is_empty() {
                std::thread::sleep(limit);
            }
            return;
        }
        for (which, slot) in self.open.iter_mut().enumerate() {
            let Some(file) = slot else { continue };
            let fd = file.as_raw_fd();
            let revents = fds.iter().find(|p| p.fd == fd).map_or(0, |p| p.revents);
            if revents == 0 {
                continue;
            }
            let mut buf = [0u8; 8192];
            match file.read(&mut buf) {
                Ok(0) | Err(_) => *slot = None,
                Ok(n) => self.kept[which].push(&buf[..n]),
            }
        }
    }

    /// Reads until both pipes are at their end or `until` passes.
    fn read_until(&mut self, until: Instant) {
        while self.open.iter().any(Option::is_some) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.read_for(left);
        }
    }

    /// What was read from stdout and stderr; the pipes are closed on our side.
    fn text(self) -> [String; 2] {
        let [out, err] = self.kept;
        [out.text(), err.text()]
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    // The group id is our own child's pid, which we have not reaped yet or just reaped; a
    // group that is already gone yields ESRCH, which is fine.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Runs a shell command line on `host`: locally under `/bin/sh -c`, remotely over SSH.
pub fn run_shell(host: &Host, ssh: &SshSettings, line: &str, limit: Duration) -> Output {
    run_shell_in(None, host, ssh, line, limit)
}

/// [`run_shell`], reusing the host's SSH session from `sessions` when given.
pub fn run_shell_in(
    sessions: Option<&crate::ssh::Sessions>,
    host: &Host,
    ssh: &SshSettings,
    line: &str,
    limit: Duration,
) -> Output {
    match host {
        Host::Local => run_local(
            &["/bin/sh".to_string(), "-c".to_string(), line.to_string()],
            &[],
            limit,
        ),
        Host::Remote(name) => {
            crate::ssh::run_in(sessions, name, ssh, line, limit.min(ssh.command_timeout))
        }
    }
}

/// Runs `f` for every host at once, at most [`PARALLEL_HOSTS`] at a time, and returns the
/// results in the order of `hosts` (SSH hosts, or servers by their address).
pub fn for_each_host<H: Sync, T: Send>(hosts: &[H], f: impl Fn(&H) -> T + Sync) -> Vec<T> {
    let mut results = Vec::with_capacity(hosts.len());
    for chunk in hosts.chunks(PARALLEL_HOSTS) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|h| s.spawn(|| f(h))).collect();
            for handle in handles {
                results.push(handle.join().expect("a host's thread panicked"));
            }
        });
    }
    results
}

/// How many hosts one step talks to at the same time.
pub const PARALLEL_HOSTS: usize = 64;

/// A command line from words: each one shell-quoted, so values arrive as data.
pub fn argv_line(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The prefix of a privileged command: `sudo -n ` (never prompting) when the SSH settings
/// say so. sudo always gets a fixed argument vector, never a shell (`sh -c` under sudo is a
/// root shell), so a sudoers rule can allow exactly the commands deadpool runs.
pub fn sudo(ssh: &SshSettings) -> &'static str {
    if ssh.sudo { "sudo -n " } else { "" }
}

/// A privileged command line from words: each word shell-quoted, behind [`sudo`].
pub fn privileged(ssh: &SshSettings, words: &[&str]) -> String {
    format!("{}{}", sudo(ssh), argv_line(words))
}

/// Splits a user's command template into words first and fills the `{name}` placeholders
/// in each word after, so that a value is always exactly one word, whatever it holds.
pub fn template_words(template: &str, values: &[(&str, &str)]) -> Result<Vec<String>, String> {
    Ok(crate::text::split_words(template)?
        .into_iter()
        .map(|w| {
            values
                .iter()
                .fold(w, |w, (k, v)| w.replace(&format!("{{{k}}}"), v))
        })
        .collect())
}

/// A user's shell command template with `{name}` placeholders replaced by shell-quoted
/// values: whatever a value holds, it reaches the command as one word of data.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut line = template.to_string();
    for (key, value) in values {
        line = line.replace(&format!("{{{key}}}"), &shell_quote(value));
    }
    line
}

/// Calls `step` every 100 ms until it returns a value or `limit` passes; for catch-up waits.
pub fn poll<T, E>(
    limit: Duration,
    mut step: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = step()? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on its own thread and waits at most `limit` for it. A call that blocks in a
/// library without a timeout of its own (name resolution, a stalled handshake) cannot hold
/// up the tick: the thread is abandoned and ends with the process.
pub fn with_deadline<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn captures_output_and_code() {
        let out = run_local(
            &sh("echo hello; echo oops >&2; exit 3"),
            &[],
            Duration::from_secs(5),
        );
        assert_eq!(out.exit, Exit::Code(3));
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "oops\n");
    }

    #[test]
    fn passes_environment() {
        let env = vec![("DEADPOOL_POOL".to_string(), "a b".to_string())];
        let out = run_local(
            &sh("printf %s \"$DEADPOOL_POOL\""),
            &env,
            Duration::from_secs(5),
        );
        assert_eq!(out.stdout, "a b");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let marker =
            std::env::temp_dir().join(format!("deadpool-kill-test-{}", std::process::id()));
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let out = run_local(&sh(&script), &[], Duration::from_millis(300));
        assert_eq!(out.exit, Exit::TimedOut);
        assert!(out.duration < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&marker).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !is_running(pid),
            "background sleep {pid} survived the timeout"
        );
    }

    /// Running, as opposed to gone or a zombie waiting for a parent that does not reap.
    pub fn is_running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            Err(_) => false,
        }
    }

    #[test]
    fn output_is_capped() {
        let out = run_local(
            &sh("head -c 1000000 /dev/zero | tr '\\0' x"),
            &[],
            Duration::from_secs(10),
        );
        assert_eq!(out.exit, Exit::Code(0));
        assert!(out.stdout.len() < crate::output::OUTPUT_CAP + 100);
        assert!(out.stdout.contains("more bytes not kept"));
    }

    /// A grandchild that leaves the group (`setsid`) and keeps stdout open: what was written
    /// before the program ended is kept, the call returns after the grace, and no pipe to
    /// that grandchild stays open on our side (so nothing of ours waits on it).
    #[test]
    fn output_held_open_by_an_escaped_grandchild_is_kept() {
        let marker =
            std::env::temp_dir().join(format!("deadpool-escape-test-{}", std::process::id()));
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 30' & echo before; sleep 0.2; echo said; echo err >&2",
            marker.display()
        );
        let started = Instant::now();
        let out = run_local(&sh(&script), &[], Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out.exit, Exit::Code(0));
        assert_eq!(out.stdout, "before\nsaid\n");
        assert_eq!(out.stderr, "err\n");
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&marker).unwrap();
        let pipe = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
        let ours: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|target| *target == pipe)
            .collect();
        // SAFETY: kill(2) of the sleep this test started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        assert!(ours.is_empty(), "{pipe:?} is still open here");
    }

    #[test]
    fn missing_program_is_reported() {
        let out = run_local(&["/nonexistent/x".to_string()], &[], Duration::from_secs(1));
        assert!(matches!(out.exit, Exit::NotStarted(_)));
    }

    #[test]
    fn signal_death_is_reported() {
        let out = run_local(&sh("kill -9 $$"), &[], Duration::from_secs(5));
        assert_eq!(out.exit, Exit::Signal(9));
    }
}
