//! Loading helpers shared by the instance, the pools and every kind of monitor and step:
//! secret files, `ssh` and `tls` tables, host lists, programs, and TOML messages. Errors are
//! [`Problem`]s naming the key; the caller adds the file and the table.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Problem;
use crate::error::{ConfigError, Error};
use crate::settings::{Host, Secret, SshAuth, SshSettings, is_safe_name, parse_duration};
use crate::tls::Tls;

/// Where distributions put Nagios plugins; searched after `plugins/` and `$PATH`.
pub const NAGIOS_PLUGIN_DIRS: &[&str] = &["/usr/lib/nagios/plugins", "/usr/lib64/nagios/plugins"];

/// Reads a secret file: readable by its owner only (as ssh insists for keys), one line.
pub fn load_secret(dir: &Path, rel: &str) -> Result<Secret, String> {
    let path = dir.join(rel);
    let bytes = crate::strict::read_secret(&path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: expected the password as text (UTF-8)", path.display()))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() || line.contains('\n') || line.contains('\0') {
        return Err(format!(
            "{}: expected the password on one line",
            path.display()
        ));
    }
    Ok(Secret::new(line.to_string()))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub password_file: Option<String>,
    pub agent: Option<bool>,
    pub known_hosts: Option<String>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub sudo: Option<bool>,
}

/// A `tls` table: of a `mysql` or `redis` monitor, or of a promoting step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub verify: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
}

/// A step's own `ssh` table over the instance's `[ssh]` defaults.
pub fn step_ssh(
    dir: &Path,
    raw: Option<RawSsh>,
    defaults: &SshSettings,
) -> Result<SshSettings, Problem> {
    match raw {
        None => Ok(defaults.clone()),
        Some(raw) => ssh_settings(dir, raw, Some(defaults)).map_err(|e| e.under("ssh")),
    }
}

/// A `tls` table checked and loaded; paths are relative to the config dir. Errors name the
/// key (`tls.ca_file`, ...).
pub fn load_tls(dir: &Path, raw: RawTls) -> Result<Tls, Problem> {
    let path = |value: Option<String>, key: &str| match value {
        Some(v) if v.trim().is_empty() || v.contains('\0') => {
            Err(Problem::at(key, "expected the path of a PEM file"))
        }
        Some(v) => Ok(Some(dir.join(v))),
        None => Ok(None),
    };
    let settings = || {
        Ok(crate::settings::TlsSettings {
            ca_file: path(raw.ca_file, "ca_file")?,
            verify: raw.verify,
            cert_file: path(raw.cert_file, "cert_file")?,
            key_file: path(raw.key_file, "key_file")?,
            server_name: raw.server_name,
        })
    };
    settings()
        .and_then(crate::tls::Tls::load)
        .map_err(|p| p.under("tls"))
}

/// A list of hosts: names or addresses, `local` for this host where `local_ok`.
pub fn host_list(items: &[String], key: &str, local_ok: bool) -> Result<Vec<Host>, Problem> {
    if items.is_empty() {
        return Err(Problem::at(key, "expected at least one host"));
    }
    let mut hosts = Vec::new();
    for item in items {
        let host = Host::parse(item).map_err(|e| Problem::at(key, e))?;
        if host == Host::Local && !local_ok {
            return Err(Problem::at(key, "`local` cannot be used here"));
        }
        if hosts.contains(&host) {
            return Err(Problem::at(key, format!("`{item}` is listed twice")));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// SSH settings from a raw `ssh` table laid over `base` (the `[ssh]` defaults), or over the
/// built-in defaults when there is no base. Errors name the key.
pub fn ssh_settings(
    dir: &Path,
    raw: RawSsh,
    base: Option<&SshSettings>,
) -> Result<SshSettings, Problem> {
    let user = match raw.user {
        Some(u) => u,
        None => base.map_or_else(|| "deadpool".to_string(), |b| b.user.clone()),
    };
    if !is_safe_name(&user) {
        return Err(Problem::at(
            "user",
            format!("`{user}`: expected a user name of letters, digits, `-`, `_`, `.`"),
        ));
    }
    let methods = [
        raw.identity_file.is_some(),
        raw.password_file.is_some(),
        raw.agent == Some(true),
    ];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(Problem::new(
            "set only one of `identity_file`, `password_file`, `agent = true`",
        ));
    }
    let auth = match (raw.identity_file, raw.password_file, raw.agent) {
        (Some(f), _, _) => SshAuth::Key(dir.join(f)),
        (_, Some(f), _) => {
            let password = load_secret(dir, &f).map_err(|e| Problem::at("password_file", e))?;
            SshAuth::Password {
                file: dir.join(f),
                password,
            }
        }
        (_, _, Some(true)) => SshAuth::Agent,
        _ => base.map_or_else(|| SshAuth::Key(dir.join("id_ed25519")), |b| b.auth.clone()),
    };
    let duration =
        |value: Option<String>, key: &str, fallback: Option<Duration>, default: &str| match value {
            Some(v) => parse_duration(&v).map_err(|e| Problem::at(key, e)),
            None => Ok(fallback.unwrap_or_else(|| parse_duration(default).expect("valid default"))),
        };
    Ok(SshSettings {
        user,
        port: raw.port.or(base.map(|b| b.port)).unwrap_or(22),
        auth,
        known_hosts: match raw.known_hosts {
            Some(f) => dir.join(f),
            None => base.map_or_else(|| dir.join("known_hosts"), |b| b.known_hosts.clone()),
        },
        connect_timeout: duration(
            raw.connect_timeout,
            "connect_timeout",
            base.map(|b| b.connect_timeout),
            "3s",
        )?,
        command_timeout: duration(
            raw.command_timeout,
            "command_timeout",
            base.map(|b| b.command_timeout),
            "30s",
        )?,
        sudo: raw.sudo.or(base.map(|b| b.sudo)).unwrap_or(false),
    })
}

/// A plain TOML value as text: strings as they are, numbers and booleans as written.
pub fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Refuses `{name}` placeholders this command does not know, so that a typo fails at load
/// time instead of reaching the command literally. Anything that looks like a name between
/// braces (a letter, then letters, digits, `_` or `-`, in any case) must be known; shell
/// code is not a placeholder: `${VAR}`, `{ print }`, `{a,b}`, `{}`.
pub fn check_placeholders(cmd: &str, known: &[&str]) -> Result<(), String> {
    let mut rest = cmd;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let dollar = rest[..start].ends_with('$');
        if let Some(end) = after.find('}') {
            let name = &after[..end];
            let looks_like_one = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !dollar && looks_like_one && !known.contains(&name) {
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; the known ones are {{{}}}",
                    known.join("}, {")
                ));
            }
        }
        rest = after;
    }
    Ok(())
}

/// Resolves a plugin path: absolute as is; relative first under `plugins/`, then (for a bare
/// name) in `$PATH` and `extra` dirs. It must be an executable file.
pub fn resolve_program(dir: &Path, program: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let path = Path::new(program);
    let mut candidates = Vec::new();
    if path.is_absolute() {
        candidates.push(path.to_path_buf());
    } else {
        candidates.push(dir.join("plugins").join(path));
        if !program.contains('/') {
            candidates.extend(path_dirs().iter().map(|d| d.join(path)));
            candidates.extend(extra.iter().map(|d| Path::new(d).join(path)));
        }
    }
    for candidate in &candidates {
        if let Ok(meta) = std::fs::metadata(candidate) {
            if !meta.is_file() {
                return Err(format!("{} is not a file", candidate.display()));
            }
            if meta.permissions().mode() & 0o111 == 0 {
                return Err(format!(
                    "{} is not executable; run `chmod +x {}`",
                    candidate.display(),
                    candidate.display()
                ));
            }
            // It runs as root: neither it nor its directory may be writable by others.
            crate::strict::trusted_program(candidate).map_err(|e| e.to_string())?;
            return Ok(candidate.clone());
        }
    }
    if path.is_absolute() {
        Err(format!("{program} does not exist"))
    } else {
        Err(format!(
            "`{program}` was not found in {}{}",
            dir.join("plugins").display(),
            if program.contains('/') {
                ""
            } else {
                " nor in $PATH"
            }
        ))
    }
}

/// The directories of `$PATH` in order, as execvp(3) and the shell search them (glibc's
/// default when it is unset).
fn path_dirs() -> Vec<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&paths)
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect()
}

/// Checks, as the plugins' rule ([`crate::strict::trusted_program`]) checks a plugin, the
/// program a command on `local` starts: its first word, or with `shell` the first word
/// after any `NAME=value` assignments (and `/bin/sh` itself). A word with a `/` is a path
/// (relative to deadpool's working directory); a bare name is looked up in `$PATH` as the
/// shell and execvp(3) look it up, and every directory searched up to the one that holds it
/// must be trusted too, since a program planted in one of them would run instead. A shell
/// line's first word that no directory of `$PATH` holds is a builtin or a keyword (`cd`,
/// `if`) and is left to the shell; the line's later commands are not checked.
pub fn check_local_command(command: &str, shell: bool) -> Result<(), String> {
    let trusted = |p: &Path| crate::strict::trusted_program(p).map_err(|e| e.to_string());
    let words = crate::text::split_words(command)?;
    let program = if shell {
        trusted(Path::new("/bin/sh"))?;
        words.iter().find(|w| !is_assignment(w))
    } else {
        words.first()
    };
    let Some(program) = program else {
        return Ok(());
    };
    if ["{new_primary}", "{old_primary}", "{pool}"]
        .iter()
        .any(|p| program.contains(p))
    {
        return Err(format!(
            "the program `{program}` holds a placeholder; name the program itself, so that it can be checked when the config is loaded"
        ));
    }
    if program.contains('/') {
        return trusted(Path::new(program));
    }
    for dir in path_dirs() {
        if !dir.is_dir() {
            continue;
        }
        crate::strict::trusted_dir(&dir).map_err(|e| {
            format!(
                "{e} ({} is in $PATH, searched for `{program}`; or name the program by its full path)",
                dir.display()
            )
        })?;
        let candidate = dir.join(program);
        if std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return trusted(&candidate);
        }
    }
    if shell {
        Ok(())
    } else {
        Err(format!(
            "`{program}` was not found in $PATH ({}); install it or name it by its full path",
            std::env::var("PATH").unwrap_or_default()
        ))
    }
}

/// A shell word that sets a variable for the command after it (`LC_ALL=C`).
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Reads a config file (`deadpool.toml`, a pool file) that only root can change
/// ([`crate::strict::read_config`]): nothing in it is used before that is checked.
pub fn read_file(path: &Path, hint: &str) -> Result<String, Error> {
    let cannot = |what: String| {
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        };
        Error::Config(ConfigError::in_file(
            path,
            format!("cannot read: {what}{hint}"),
        ))
    };
    let bytes = match crate::strict::read_config(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(cannot("No such file or directory".to_string())),
        Err(e) => return Err(untrusted(path, &e)),
    };
    String::from_utf8(bytes).map_err(|_| {
        Error::Config(ConfigError::in_file(
            path,
            "not UTF-8 text; a config file is TOML",
        ))
    })
}

/// A config file or directory refused by [`crate::strict`], placed at `file`; the message
/// names the path at fault (`file` itself, or a directory above it) and the fix.
pub fn untrusted(file: &Path, e: &crate::strict::Unsafe) -> Error {
    if e.path == file {
        Error::Config(ConfigError::plain(e.to_string()))
    } else {
        Error::Config(ConfigError::in_file(file, e.to_string()))
    }
}

/// A file toml could not parse: toml's own message (which carries the line and column)
/// as the problem, after the file's name.
pub fn toml_error(file: &Path, e: &toml::de::Error) -> Error {
    Error::Config(ConfigError::in_file(file, toml_msg(e)))
}

/// toml's own message, which carries the line, column and key, made to fit one block.
pub fn toml_msg(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_string()
}

pub fn line_of(text: &str, pred: impl Fn(&str) -> bool) -> Option<usize> {
    lines_of(text, pred).first().copied()
}

pub fn lines_of(text: &str, pred: impl Fn(&str) -> bool) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| pred(l.split('#').next().unwrap_or("").trim()))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The duration set at `key`, or `default`.
pub fn duration_or(value: &Option<String>, default: &str, key: &str) -> Result<Duration, Problem> {
    parse_duration(value.as_deref().unwrap_or(default)).map_err(|e| Problem::at(key, e))
}

/// The files an SSH login reads as root, by the rules `check-config` states: the
/// `identity_file` is a secret ([`check_secret_file`]); `known_hosts` decides which servers
/// are believed, so it is a config file only root can change
/// ([`crate::strict::trusted_config`]). A file that does not exist is left to
/// `check-config` and to the login, which name it with the command that creates it.
pub fn check_ssh_files(ssh: &SshSettings) -> Result<(), Problem> {
    if let SshAuth::Key(key) = &ssh.auth
        && key.exists()
    {
        check_secret_file(key).map_err(|e| Problem::at("identity_file", e))?;
    }
    crate::strict::trusted_config(&ssh.known_hosts).map_err(|e| Problem::at("known_hosts", e))?;
    Ok(())
}

/// Checks that a secret file is a regular file (no link), owned by root or the running
/// user and readable by its owner only, as ssh insists for keys.
pub fn check_secret_file(path: &Path) -> Result<(), String> {
    crate::strict::secret(path).map_err(|e| e.to_string())
}
