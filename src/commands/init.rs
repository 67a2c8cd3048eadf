//! `deadpool init`: writes the commented example config dir shipped in `config/`, and
//! prints the next steps. Never overwrites a file without `--force`.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::InitArgs;
use crate::error::{Error, Outcome};

/// Each file: path inside the config dir, contents, mode.
const FILES: &[(&str, &str, u32)] = &[
    (
        "deadpool.toml",
        include_str!("../../config/deadpool.toml"),
        0o644,
    ),
    (
        "pools/example_db.toml",
        include_str!("../../config/pools/example_db.toml"),
        0o644,
    ),
    (
        "pools/orders_mysql.toml.example",
        include_str!("../../config/pools/orders_mysql.toml.example"),
        0o644,
    ),
    (
        "pools/orders_dns_lb.toml.example",
        include_str!("../../config/pools/orders_dns_lb.toml.example"),
        0o644,
    ),
    (
        "pools/cache_redis.toml.example",
        include_str!("../../config/pools/cache_redis.toml.example"),
        0o644,
    ),
    (
        "plugins/check_example",
        include_str!("../../config/plugins/check_example"),
        0o755,
    ),
    (
        "plugins/example_step",
        include_str!("../../config/plugins/example_step"),
        0o755,
    ),
];

pub fn run(config_dir: &Path, args: &InitArgs) -> Result<Outcome> {
    let dir = args.path.as_deref().unwrap_or(config_dir);
    let existing: Vec<String> = FILES
        .iter()
        .map(|(path, _, _)| dir.join(path))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        return Err(Error::Usage(format!(
            "{} already exist(s); nothing was written. Use --force to overwrite, or --path to write elsewhere",
            existing.join(", ")
        ))
        .into());
    }
    for sub in ["", "pools", "plugins", "secrets"] {
        let mode = if sub == "secrets" { 0o700 } else { 0o755 };
        DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    for (path, contents, mode) in FILES {
        let target = dir.join(path);
        // With --force, an existing file is overwritten, never written through: not a link
        // (O_NOFOLLOW), not a file with other hard links, not a FIFO (no wait on it).
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(*mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&target)
            .with_context(|| {
                format!(
                    "cannot write {} (a symbolic link is refused)",
                    target.display()
                )
            })?;
        crate::strict::single_file(&target, &file.metadata()?)?;
        file.set_len(0)?;
        file.write_all(contents.as_bytes())?;
        println!("wrote {}", target.display());
    }
    let flag = if dir == Path::new(crate::config::DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --config {}", dir.display())
    };
    println!(
        "
Next steps:
  1. Edit {pools}: your servers, the monitor, the failover chain.
  2. For steps over SSH (etc_hosts, vip, remote exec, haproxy via SSH): an SSH key at {key} (mode 600) and the
     clients' host keys in {known}, e.g. `ssh-keyscan -t ed25519 HOST >> {known}`.
  3. Check it:             deadpool{flag} check-config
  4. See what a tick does: deadpool{flag} tick --dry-run
  5. Start the timer:      systemctl enable --now deadpool.timer
     (another instance:    systemctl enable --now deadpool@NAME.timer, config in /etc/deadpool-NAME)
  6. Point Nagios at:      deadpool{flag} report --nagios",
        pools = dir.join("pools/example_db.toml").display(),
        key = dir.join("id_ed25519").display(),
        known = dir.join("known_hosts").display(),
    );
    Ok(Outcome::Done)
}
