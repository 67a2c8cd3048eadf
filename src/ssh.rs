//! The SSH runner: one connection per command, or one per host for a whole failover
//! ([`Sessions`]), every stage bounded. Host keys are always verified against the configured
//! `known_hosts`: an unknown key is refused with the exact `ssh-keyscan` line that would add
//! it, a changed key is refused loudly.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssh2::{HashType, HostKeyType, MethodType, Session};

use crate::known_hosts;

use crate::output::{Capped, Exit, Output};
use crate::settings::{SshAuth, SshSettings};

/// Runs `line` (a complete shell command line) on `host` as the configured user. The line
/// is wrapped in `timeout` on the remote side, so a command that outlives `limit` is killed
/// there too, not just abandoned.
///
/// With `sessions`, the host's kept session is reused (and left there for the next command);
/// without, the connection is closed when the command ends.
pub fn run_in(
    sessions: Option<&Sessions>,
    host: &str,
    ssh: &SshSettings,
    line: &str,
    limit: Duration,
) -> Output {
    let started = Instant::now();
    // One deadline for the whole call, login included: the caller's limit is exact.
    let deadline = started + limit;
    let secs = limit.as_secs_f64().ceil().max(1.0) as u64;
    let wrapped = format!(
        "timeout -k 1 {secs} sh -c {}",
        crate::text::shell_quote(line)
    );
    let failed = |exit: Exit| Output {
        exit,
        stdout: String::new(),
        stderr: String::new(),
        duration: started.elapsed(),
    };
    let Some(sessions) = sessions else {
        return match session(host, ssh, deadline) {
            Err(exit) => failed(exit),
            Ok(sess) => exec(&sess, &wrapped, deadline, started),
        };
    };
    // Commands on one host take turns on its session.
    let slot = sessions.slot(host, ssh);
    let mut open = slot.lock().unwrap_or_else(|p| p.into_inner());
    let reused = open.is_some();
    if open.is_none() {
        match session(host, ssh, deadline) {
            Ok(sess) => *open = Some(sess),
            Err(exit) => return failed(exit),
        }
    }
    let out = exec(
        open.as_ref().expect("just opened"),
        &wrapped,
        deadline,
        started,
    );
    let stale = matches!(&out.exit, Exit::NotStarted(m) if m.starts_with("ssh channel") || m.starts_with("ssh exec"));
    if reused && stale {
        // The host closed the kept session (restarted sshd, idle limits): log in again once.
        *open = None;
        return match session(host, ssh, deadline) {
            Err(exit) => failed(exit),
            Ok(sess) => {
                let out = exec(&sess, &wrapped, deadline, started);
                *open = Some(sess);
                out
            }
        };
    }
    out
}

/// SSH sessions kept for one failover: each host is logged in to once (per user and
/// credentials), and the chain's preflights, actions and verifications reuse that login.
/// Dropped (and so closed) when the failover ends.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<Mutex<Option<Session>>>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.open.lock().map_or(0, |m| m.len());
        write!(f, "Sessions({n} hosts)")
    }
}

impl Sessions {
    fn slot(&self, host: &str, ssh: &SshSettings) -> Arc<Mutex<Option<Session>>> {
        let auth = match &ssh.auth {
            SshAuth::Key(path) => path.display().to_string(),
            SshAuth::Agent => "agent".to_string(),
            SshAuth::Password { file, .. } => file.display().to_string(),
        };
        let key = format!("{}@{host}:{} {auth}", ssh.user, ssh.port);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.entry(key).or_default().clone()
    }

    /// Logs in to every host at once, within `limit`, so that the chain's first command on
    /// each finds its session ready. A host that cannot be reached is left to the step that
    /// needs it, which tries again and reports it.
    pub fn open_all(&self, logins: &[(String, SshSettings)], limit: Duration) {
        let deadline = Instant::now() + limit;
        std::thread::scope(|s| {
            for (host, ssh) in logins {
                s.spawn(move || {
                    let slot = self.slot(host, ssh);
                    let mut open = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if open.is_none()
                        && let Ok(sess) = session(host, ssh, deadline)
                    {
                        *open = Some(sess);
                    }
                });
            }
        });
    }
}

fn unreachable(host: &str, what: impl std::fmt::Display) -> Exit {
    Exit::Unreachable(format!("{host}: {what}"))
}

fn refused(host: &str, what: impl std::fmt::Display) -> Exit {
    Exit::NotStarted(format!("{host}: {what}"))
}

/// Connects, shakes hands, checks the host key and logs in, within `connect_timeout` for
/// the TCP connection and again for each later stage, and never past `deadline`.
fn session(host: &str, ssh: &SshSettings, deadline: Instant) -> Result<Session, Exit> {
    let started = Instant::now();
    let stage = || {
        ssh.connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1))
    };
    let addrs = crate::net::resolve(host, ssh.port, stage()).map_err(|e| unreachable(host, e))?;
    let addr = addrs
        .first()
        .ok_or_else(|| unreachable(host, "no address"))?;
    let tcp = TcpStream::connect_timeout(addr, stage())
        .map_err(|e| unreachable(host, format_args!("ssh port {}: {e}", ssh.port)))?;
    let known = known_hosts(host, ssh)?;
    let mut sess = Session::new().map_err(|e| refused(host, e))?;
    // Offer the key types known_hosts holds for this host first: a server with several host
    // keys then shows the one we can check.
    let prefs = known_hosts::algorithm_preference(&known, host, ssh.port);
    sess.method_pref(MethodType::HostKey, &prefs).map_err(|e| {
        refused(
            host,
            format_args!("host key algorithms {prefs}: {}", e.message()),
        )
    })?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(millis(stage()));
    sess.handshake()
        .map_err(|e| unreachable(host, format_args!("ssh handshake: {}", e.message())))?;
    check_host_key(&sess, host, ssh, &known)?;
    sess.set_timeout(millis(stage()));
    let login = match &ssh.auth {
        SshAuth::Key(path) => sess.userauth_pubkey_file(&ssh.user, None, path, None),
        SshAuth::Agent => sess.userauth_agent(&ssh.user),
        SshAuth::Password { password, .. } => sess.userauth_password(&ssh.user, password.expose()),
    };
    if let Err(e) = login {
        let how = match &ssh.auth {
            SshAuth::Key(path) => format!("key {}", path.display()),
            SshAuth::Agent => "the ssh agent".to_string(),
            SshAuth::Password { file, .. } => format!("the password in {}", file.display()),
        };
        return Err(refused(
            host,
            format_args!("login as {} with {how} failed: {}", ssh.user, e.message()),
        ));
    }
    if !sess.authenticated() {
        return Err(refused(
            host,
            format_args!("login as {} was not accepted", ssh.user),
        ));
    }
    crate::debug!(
        "ssh {}@{host}: logged in after {:.2}s",
        ssh.user,
        started.elapsed().as_secs_f64()
    );
    Ok(sess)
}

/// Reads and parses the configured known_hosts file, which only root may be able to change
/// ([`crate::strict::read_config`]): whoever can write it decides which servers are
/// believed.
fn known_hosts(host: &str, ssh: &SshSettings) -> Result<Vec<known_hosts::Entry>, Exit> {
    match crate::strict::read_config(&ssh.known_hosts) {
        Ok(Some(bytes)) => Ok(known_hosts::parse(&String::from_utf8_lossy(&bytes))),
        Ok(None) => Err(refused(
            host,
            format_args!(
                "cannot read known_hosts {}: it does not exist; create it with the clients' keys (ssh-keyscan -p {} {host} >> {}) after checking them",
                ssh.known_hosts.display(),
                ssh.port,
                ssh.known_hosts.display()
            ),
        )),
        Err(e) => Err(refused(host, format_args!("known_hosts: {e}"))),
    }
}

fn check_host_key(
    sess: &Session,
    host: &str,
    ssh: &SshSettings,
    known: &[known_hosts::Entry],
) -> Result<(), Exit> {
    let (key, kind) = sess
        .host_key()
        .ok_or_else(|| refused(host, "the server sent no host key"))?;
    let type_name = key_type_name(kind);
    let fingerprint = sess
        .host_key_hash(HashType::Sha256)
        .map(|h| format!("SHA256:{}", base64(h).trim_end_matches('=')))
        .unwrap_or_default();
    let file = ssh.known_hosts.display();
    let port = ssh.port;
    let keyscan = format!(
        "ssh-keyscan -p {port} -t {} {host} >> {file}",
        short_type(type_name)
    );
    match known_hosts::check(known, host, port, key) {
        known_hosts::Verdict::Match => Ok(()),
        known_hosts::Verdict::NotFound => Err(refused(
            host,
            format_args!(
                "unknown host key {type_name} {fingerprint}; refusing to connect. After checking the fingerprint, add it with: {keyscan}"
            ),
        )),
        known_hosts::Verdict::Revoked => Err(refused(
            host,
            format_args!(
                "the server's host key {type_name} {fingerprint} is REVOKED in {file}; refusing to connect"
            ),
        )),
        known_hosts::Verdict::CertificateOnly => Err(refused(
            host,
            format_args!(
                "{file} names the host only through @cert-authority, and host certificates are not supported; add the host's key itself ({keyscan})"
            ),
        )),
        known_hosts::Verdict::Changed(types) => Err(refused(
            host,
            format_args!(
                "HOST KEY CHANGED: the server now offers {type_name} {fingerprint}, which does not match the {} key(s) in {file}; refusing to connect (a man-in-the-middle, or a reinstalled host). If the change is expected, remove the old key with `ssh-keygen -R {} -f {file}` and add the new one",
                types.join("/"),
                if port == 22 {
                    host.to_string()
                } else {
                    format!("[{host}]:{port}")
                },
            ),
        )),
    }
}

fn key_type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The `-t` argument of ssh-keyscan for a key type.
fn short_type(name: &str) -> &str {
    match name {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        "ssh-dss" => "dsa",
        n if n.starts_with("ecdsa") => "ecdsa",
        n => n,
    }
}

/// Runs the command on a logged-in session, reading stdout and stderr without blocking so
/// that neither can fill up and stall the other, until the channel closes or `deadline`.
fn exec(sess: &Session, line: &str, deadline: Instant, started: Instant) -> Output {
    let fail = |exit: Exit| Output {
        exit,
        stdout: String::new(),
        stderr: String::new(),
        duration: started.elapsed(),
    };
    // A kept session carries the previous command's timeout: this one gets what is left.
    sess.set_timeout(millis(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ));
    let mut channel = match sess.channel_session() {
        Ok(c) => c,
        Err(e) => return fail(Exit::NotStarted(format!("ssh channel: {}", e.message()))),
    };
    if let Err(e) = channel.exec(line) {
        return fail(Exit::NotStarted(format!("ssh exec: {}", e.message())));
    }
    sess.set_blocking(false);
    let (mut out, mut err) = (Capped::default(), Capped::default());
    let mut buf = [0u8; 8192];
    let mut timed_out = false;
    loop {
        let mut progressed = false;
        let mut done = 0;
        for which in 0..2 {
            let read = if which == 0 {
                channel.read(&mut buf)
            } else {
                channel.stderr().read(&mut buf)
            };
            match read {
                Ok(0) => done += 1,
                Ok(n) => {
                    progressed = true;
                    if which == 0 {
                        out.push(&buf[..n])
                    } else {
                        err.push(&buf[..n])
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => done += 1,
            }
        }
        if done == 2 && channel.eof() {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    sess.set_blocking(true);
    sess.set_timeout(2000);
    let exit = if timed_out {
        let _ = channel.close();
        Exit::TimedOut
    } else {
        let _ = channel.wait_close();
        match (
            channel.exit_status(),
            channel.exit_signal().ok().and_then(|s| s.exit_signal),
        ) {
            (_, Some(signal)) => Exit::NotStarted(format!("killed by SIG{signal}")),
            // `timeout` exits 124 when it had to stop the command.
            (Ok(124), None) => Exit::TimedOut,
            (Ok(code), None) => Exit::Code(code),
            (Err(e), None) => Exit::NotStarted(format!("ssh exit status: {}", e.message())),
        }
    };
    Output {
        exit,
        stdout: out.text(),
        stderr: err.text(),
        duration: started.elapsed(),
    }
}

/// What a direct channel reaches on the far side of an SSH connection.
#[derive(Debug, Clone, Copy)]
pub enum Forward<'a> {
    /// A unix socket on the remote host (OpenSSH's `direct-streamlocal@openssh.com`).
    Unix(&'a str),
    /// A TCP port as the remote host sees it (`direct-tcpip`).
    Tcp(&'a str, u16),
}

/// Logs in to `host` as [`run_in`] does, has its sshd connect a channel to `target` (no command
/// runs there: nothing like socat is needed), writes `request`, and returns what the far end
/// sends until it closes the connection (at most `cap` bytes), all within `limit`.
pub fn exchange(
    host: &str,
    ssh: &SshSettings,
    target: Forward,
    request: &[u8],
    cap: usize,
    limit: Duration,
) -> Result<Vec<u8>, Exit> {
    let deadline = Instant::now() + limit;
    let sess = session(host, ssh, deadline)?;
    sess.set_timeout(millis(deadline.saturating_duration_since(Instant::now())));
    let opened = match target {
        Forward::Unix(path) => sess.channel_direct_streamlocal(path, None),
        Forward::Tcp(to, port) => sess.channel_direct_tcpip(to, port, None),
    };
    let what = match target {
        Forward::Unix(path) => path.to_string(),
        Forward::Tcp(to, port) => format!("{to}:{port}"),
    };
    let mut channel = opened.map_err(|e| {
        refused(
            host,
            format_args!("sshd could not connect to {what}: {}", e.message()),
        )
    })?;
    std::io::Write::write_all(&mut channel, request)
        .map_err(|e| refused(host, format_args!("writing to {what}: {e}")))?;
    sess.set_blocking(false);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let result = loop {
        match channel.read(&mut buf) {
            Ok(0) => break Ok(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n.min(cap.saturating_sub(answer.len()))]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    break Err(Exit::TimedOut);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => break Err(refused(host, format_args!("reading from {what}: {e}"))),
        }
    };
    // Closing waits for the server: give it what is left, at least 100 ms, not more.
    sess.set_blocking(true);
    sess.set_timeout(millis(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100)),
    ));
    let _ = channel.close();
    result
}

/// A libssh2 timeout in milliseconds: full range, never 0 (which means "no timeout").
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Standard base64, for host key fingerprints.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::settings::{SshAuth, SshSettings};

    fn lab(args: &[&str]) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    fn values_reach_a_remote_command_as_data_never_as_code() {
        lab(&["up"]);
        let env: std::collections::HashMap<String, String> = lab(&["env"])
            .lines()
            .filter_map(|l| l.trim_start_matches("export ").split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        let ssh = SshSettings {
            user: env["LAB_SSH_USER"].clone(),
            port: 22,
            auth: SshAuth::Key(PathBuf::from(&env["LAB_SSH_KEY"])),
            known_hosts: PathBuf::from(&env["LAB_SSH_KNOWN_HOSTS"]),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(10),
            sudo: false,
        };
        let marker = format!("{}/pwned", env["LAB_DIR"]);
        let nasty = format!(
            "it's; $(touch {marker}) `touch {marker}` \"q\" | & > < \\ {{new_primary}} $HOME\nline2"
        );
        let line = crate::remote::render("printf %s {v}", &[("v", &nasty)]);
        let out = super::run_in(
            None,
            &env["LAB_APP1_IP"],
            &ssh,
            &line,
            Duration::from_secs(10),
        );
        let pwned = std::path::Path::new(&marker).exists();
        lab(&["down"]);
        assert_eq!(out.exit, crate::remote::Exit::Code(0), "{out:?}");
        assert_eq!(out.stdout, nasty);
        assert!(!pwned, "a value ran as code");
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
