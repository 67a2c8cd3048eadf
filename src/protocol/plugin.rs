//! The `plugin` step: a user executable run as `COMMAND preflight|promote|check` with the
//! pool described in its environment (the contract in the README). A `check` whose first
//! line starts with `direction:` reports where clients are sent now.

use std::path::{Path, PathBuf};

use super::{Action, Context, HostResult, LoadContext, Protocol, host_result};
use crate::config::load::{load_secret, resolve_program, scalar_text};
use crate::error::Problem;
use crate::model::Concern;
use crate::remote;

/// The step's `type`.
pub const TYPE: &str = "plugin";

/// The `plugin` step's settings.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub program: PathBuf,
    /// Every other key of the `[[protocol]]` table, as `DEADPOOL_OPT_<KEY>` values.
    pub options: Vec<PluginOption>,
}

/// The `plugin` step's keys: `command`, the plugin's path, and any others as options.
pub fn load(mut table: toml::Table, cx: &LoadContext) -> Result<Plugin, Problem> {
    let command = match table.remove("command") {
        Some(toml::Value::String(s)) if !s.is_empty() => s,
        Some(_) => return Err(Problem::at("command", "expected the plugin's path")),
        None => return Err(Problem::at("command", "a `plugin` step needs a command")),
    };
    let program = resolve_program(cx.dir, &command, &[]).map_err(|e| Problem::at("command", e))?;
    let mut options = Vec::new();
    for (key, value) in table {
        options.push(option(cx.dir, &key, &value)?);
    }
    Ok(Plugin { program, options })
}

/// Whether an option's name says it holds a secret, in any case: it contains a word of
/// [`SECRET_WORDS`] anywhere (`apitoken`, `db_password`, `x_auth_header`), or a part
/// between `_` or `-` is `pw` or ends in `key`/`keys` (`api_key`, `accesskey`, `ssh_keys`;
/// not `keyspace`). A name wrongly taken for a secret's only hides a value from the plans.
pub fn is_secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
        || key
            .split(['_', '-'])
            .any(|part| part == "pw" || part.ends_with("key") || part.ends_with("keys"))
}

/// The words that mark a name as a secret's wherever they occur in it.
const SECRET_WORDS: &[&str] = &[
    "pass", // password, passwd, passphrase
    "pwd",
    "secret",
    "token",
    "bearer",
    "credential",
    "auth",
    "cookie",
    "private",
    "session",
    "signature",
];

/// The mask shown instead of a secret.
const MASK: &str = "<secret>";

/// A value with the secrets it carries masked, whatever the option is called: the password
/// of a URL's user info (`postgres://app:PASSWORD@db/x`) and the value of every
/// `NAME=VALUE` whose name is a secret's ([`is_secret_name`]; `password=...` in a libpq
/// conninfo, `PWD=...;` in an ODBC string, `?token=...` in a query). `None`: nothing to mask.
pub fn redact_value(value: &str) -> Option<String> {
    let masked = mask_assignments(&mask_userinfo(value));
    (masked != value).then_some(masked)
}

/// `scheme://user:PASSWORD@host`: the password masked, in each URL of the text.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | ',') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                out.push_str(&format!("{user}:{MASK}@{host}"));
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `NAME=VALUE` with a secret's name: the value masked (quoted or up to a space, `&`, `;`
/// or `,`).
fn mask_assignments(text: &str) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = (&rest[..eq], &rest[eq + 1..]);
        let trimmed = before.trim_end();
        let name_start = trimmed.rfind(|c: char| !is_name(c)).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        });
        let name = &trimmed[name_start..];
        out.push_str(before);
        out.push('=');
        if name.is_empty() || !is_secret_name(name) {
            rest = after;
            continue;
        }
        let value = after.trim_start();
        out.push_str(&after[..after.len() - value.len()]);
        let len = match value.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let mut escaped = false;
                value[1..]
                    .char_indices()
                    .find(|&(_, c)| {
                        let close = c == q && !escaped;
                        escaped = c == '\\' && !escaped;
                        close
                    })
                    .map_or(value.len(), |(i, _)| i + 2)
            }
            _ => value
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | ','))
                .unwrap_or(value.len()),
        };
        if len > 0 {
            out.push_str(MASK);
        }
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

/// A plugin option: `KEY = value` becomes `DEADPOOL_OPT_KEY`. `KEY_file = "path"` reads a
/// secret file (the usual checks) into `DEADPOOL_OPT_KEY`. Secret values are masked in every
/// output; the plugin gets the real value in its environment.
fn option(dir: &Path, key: &str, value: &toml::Value) -> Result<PluginOption, Problem> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Problem::at(
            key,
            "plugin option names may hold only letters, digits and `_`",
        ));
    }
    if let Some(name) = key.strip_suffix("_file").filter(|n| !n.is_empty()) {
        let toml::Value::String(rel) = value else {
            return Err(Problem::at(key, "expected the path of a secret file"));
        };
        let secret = load_secret(dir, rel).map_err(|e| Problem::at(key, e))?;
        return Ok(PluginOption {
            env: format!("DEADPOOL_OPT_{}", name.to_ascii_uppercase()),
            value: secret.expose().to_string(),
            secret: true,
        });
    }
    let text = match value {
        toml::Value::Array(items) => {
            let mut parts = Vec::new();
            for item in items {
                let part = scalar_text(item).ok_or_else(|| {
                    Problem::at(key, "arrays passed to a plugin may hold only plain values")
                })?;
                parts.push(part);
            }
            parts.join(",")
        }
        v => scalar_text(v)
            .ok_or_else(|| Problem::at(key, "tables and dates cannot be passed to a plugin"))?,
    };
    if text.contains('\0') {
        return Err(Problem::at(key, "NUL bytes cannot be passed to a plugin"));
    }
    Ok(PluginOption {
        env: format!("DEADPOOL_OPT_{}", key.to_ascii_uppercase()),
        value: text,
        secret: is_secret_name(key),
    })
}

/// The word a `check` starts its first line with to say that it reports where clients are
/// sent now, not whether a failover would work (the README's plugin contract).
pub const DIRECTION: &str = "direction:";

/// A `check`'s stdout without its leading [`DIRECTION`] word (any case, and the blanks after
/// it), when its first line starts with it.
fn strip_direction(stdout: &str) -> Option<String> {
    let head = stdout.get(..DIRECTION.len())?;
    head.eq_ignore_ascii_case(DIRECTION).then(|| {
        stdout[DIRECTION.len()..]
            .trim_start_matches([' ', '\t'])
            .to_string()
    })
}

/// One option of a `plugin` step, as it reaches the plugin's environment.
#[derive(Clone, PartialEq, Eq)]
pub struct PluginOption {
    pub env: String,
    pub value: String,
    /// Masked in every output (plans, reports, history, logs).
    pub secret: bool,
}

impl PluginOption {
    /// The value as outputs may show it: a secret's masked, and the secrets any other value
    /// carries ([`redact_value`]).
    pub fn shown(&self) -> std::borrow::Cow<'_, str> {
        if self.secret {
            return MASK.into();
        }
        match redact_value(&self.value) {
            Some(masked) => masked.into(),
            None => self.value.as_str().into(),
        }
    }
}

impl std::fmt::Debug for PluginOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.env, self.shown())
    }
}

impl Plugin {
    fn invoke(&self, action: Action, ctx: &Context) -> Vec<HostResult> {
        let argv = vec![
            self.program.to_string_lossy().into_owned(),
            action.as_str().to_string(),
        ];
        let mut out = remote::run_local(&argv, &self.env(action, ctx), ctx.left());
        if action != Action::Check {
            return vec![host_result("local", &out, false)];
        }
        let concern = match strip_direction(&out.stdout) {
            Some(rest) => {
                out.stdout = rest;
                Concern::Direction
            }
            None => Concern::Readiness,
        };
        vec![host_result("local", &out, true).about(concern)]
    }

    fn env(&self, action: Action, ctx: &Context) -> Vec<(String, String)> {
        let mut env = vec![
            ("DEADPOOL_POOL".to_string(), ctx.pool.name.to_string()),
            ("DEADPOOL_ACTION".to_string(), action.as_str().to_string()),
            (
                "DEADPOOL_PRIMARY".to_string(),
                ctx.pool.primary().to_string(),
            ),
            (
                "DEADPOOL_SECONDARY".to_string(),
                ctx.pool.address(crate::model::Role::SECONDARY).to_string(),
            ),
            (
                "DEADPOOL_STANDBYS".to_string(),
                ctx.pool.servers[1..].join(","),
            ),
            (
                "DEADPOOL_OLD_PRIMARY".to_string(),
                ctx.old_primary.to_string(),
            ),
            (
                "DEADPOOL_NEW_PRIMARY".to_string(),
                ctx.new_primary.to_string(),
            ),
            (
                "DEADPOOL_DRY_RUN".to_string(),
                if ctx.dry_run { "1" } else { "0" }.to_string(),
            ),
            ("DEADPOOL_STEP".to_string(), ctx.step.name.clone()),
        ];
        env.extend(
            self.options
                .iter()
                .map(|o| (o.env.clone(), o.value.clone())),
        );
        env
    }
}

impl Protocol for Plugin {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        self.invoke(Action::Preflight, ctx)
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        self.invoke(Action::Promote, ctx)
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        self.invoke(Action::Check, ctx)
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let mut words = vec![
            format!("DEADPOOL_OLD_PRIMARY={}", ctx.old_primary),
            format!("DEADPOOL_NEW_PRIMARY={}", ctx.new_primary),
        ];
        words.extend(
            self.options
                .iter()
                .map(|o| format!("{}={}", o.env, crate::text::shell_quote(&o.shown()))),
        );
        words.push(crate::text::shell_quote(&self.program.to_string_lossy()));
        words.push("promote".to_string());
        let line = words.join(" ");
        vec![("local".to_string(), line)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_says_it_reports_direction_with_its_first_word() {
        let table = [
            (
                "direction: app1 -> 10.0.0.1\nmore",
                Some("app1 -> 10.0.0.1\nmore"),
            ),
            ("DIRECTION:\tapp1", Some("app1")),
            ("Direction:", Some("")),
            ("all fine\ndirection: app1", None),
            ("directions: app1", None),
            ("direct", None),
            ("directioné", None),
            ("", None),
        ];
        for (stdout, rest) in table {
            assert_eq!(strip_direction(stdout).as_deref(), rest, "{stdout:?}");
        }
    }

    #[test]
    fn plugin_options_become_env() {
        let v: toml::Value = toml::Value::Array(vec!["a".into(), 3.into()]);
        let dir = Path::new("/nonexistent");
        let o = option(dir, "url_list", &v).unwrap();
        assert_eq!(
            (o.env.as_str(), o.value.as_str(), o.secret),
            ("DEADPOOL_OPT_URL_LIST", "a,3", false)
        );
        assert!(option(dir, "bad-key", &toml::Value::from("x")).is_err());
        let token = option(dir, "api_token", &toml::Value::from("s3cr3t")).unwrap();
        assert!(
            token.secret && token.shown() == "<secret>" && !format!("{token:?}").contains("s3cr3t")
        );
        for (name, secret) in [
            ("password", true),
            ("db_password", true),
            ("api_key", true),
            ("key", true),
            ("keyspace", false),
            ("service_name", false),
            ("token", true),
            ("passwd", true),
            ("apitoken", true),
            ("secretkey", true),
            ("accesskey", true),
            ("AccessKey", true),
            ("bearer", true),
            ("ssh_keys", true),
            ("credentials_json", true),
            ("x_auth_header", true),
            ("passphrase", true),
            ("db_pw", true),
            ("PWD", true),
            ("dsn", false),
            ("url", false),
            ("color", false),
            ("keyid_prefix", false),
        ] {
            assert_eq!(is_secret_name(name), secret, "{name}");
        }
    }

    #[test]
    fn secrets_inside_values_are_masked() {
        let rows = [
            (
                "postgres://app:hunter2@db1:5432/orders?sslmode=require",
                Some("postgres://app:<secret>@db1:5432/orders?sslmode=require"),
            ),
            (
                "mysql://root:p@ss@db1/x",
                Some("mysql://root:<secret>@db1/x"),
            ),
            ("https://user@host/path", None),
            ("https://host/a@b", None),
            (
                "host=db1 user=app password=hunter2 dbname=x",
                Some("host=db1 user=app password=<secret> dbname=x"),
            ),
            (
                "host=db1 password = 'a b\\' c' port=5432",
                Some("host=db1 password = <secret> port=5432"),
            ),
            (
                "Server=db1;Uid=app;PWD=hunter2;",
                Some("Server=db1;Uid=app;PWD=<secret>;"),
            ),
            (
                "https://api/x?token=abc&user=me",
                Some("https://api/x?token=<secret>&user=me"),
            ),
            (
                "redis://:hunter2@r1:6379,redis://u:pw@r2",
                Some("redis://:<secret>@r1:6379,redis://u:<secret>@r2"),
            ),
            ("a=b c==d =e", None),
            ("plain text", None),
        ];
        for (value, masked) in rows {
            assert_eq!(redact_value(value).as_deref(), masked, "{value}");
        }
        let dsn = option(
            Path::new("/nonexistent"),
            "dsn",
            &toml::Value::from("postgres://app:hunter2@db1/x"),
        )
        .unwrap();
        assert_eq!(
            dsn.value, "postgres://app:hunter2@db1/x",
            "the plugin gets it"
        );
        assert_eq!(dsn.shown(), "postgres://app:<secret>@db1/x");
        assert!(!format!("{dsn:?}").contains("hunter2"));
    }
}
