//! The systemd timer that starts this instance's ticks, read from its unit files the way
//! systemd finds them (`$SYSTEMD_UNIT_PATH`, else the system unit directories, drop-ins
//! included), and how its period fits `tick_interval`: a timer slower than
//! [`crate::rules::GAP_INTERVALS`] intervals makes every tick a gap, and no pool ever
//! fails over. No running systemd is asked: `check-config` runs anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rules::GAP_INTERVALS;
use crate::settings::format_duration;

/// The system unit directories, highest priority first (systemd.unit(5)).
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// A timer that runs `tick` for this config dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// `deadpool.timer`, `deadpool@NAME.timer`.
    pub name: String,
    /// Its unit file.
    pub file: PathBuf,
    /// The shortest of its `OnUnitInactiveSec=` and `OnUnitActiveSec=`.
    pub period: Duration,
    /// Which of the two that is.
    pub key: &'static str,
}

/// How a timer's period fits `tick_interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Within a tenth of it.
    Same,
    /// Counts go at another pace than configured.
    Off(String),
    /// Every tick is a gap: no pool ever fails over.
    Never(String),
}

/// The rule (pure).
pub fn fit(timer: &Timer, tick_interval: Duration) -> Fit {
    let (p, t) = (timer.period, tick_interval);
    let said = format!(
        "{} starts a tick every {} ({}= in {}), but tick_interval is {}",
        timer.name,
        format_duration(p),
        timer.key,
        timer.file.display(),
        format_duration(t)
    );
    let fix = format!(
        "set {}={} in a drop-in (systemctl edit {}), or tick_interval = \"{}\"",
        timer.key,
        format_duration(t),
        timer.name,
        format_duration(p)
    );
    if p > t * GAP_INTERVALS as u32 {
        Fit::Never(format!(
            "{said}: every tick starts more than {GAP_INTERVALS} x tick_interval after the last one, which the gap rule takes for a stopped timer, so failure counts restart at every tick and no pool ever fails over; {fix}"
        ))
    } else if p.abs_diff(t) * 10 > t {
        Fit::Off(format!(
            "{said}: failures are counted once every {}, so max_failed_checks takes {:.1} times as long as intended, and report's staleness thresholds (multiples of tick_interval) are off; {fix}",
            format_duration(p),
            p.as_secs_f64() / t.as_secs_f64()
        ))
    } else {
        Fit::Same
    }
}

/// The timer whose service runs `deadpool ... tick` for `config_dir`, if its unit files
/// are found: `deadpool.timer`, `deadpool@NAME.timer` for a dir named `deadpool-NAME`, and
/// every `deadpool@*.timer` enabled or installed.
pub fn find(config_dir: &Path) -> Option<Timer> {
    let dirs = unit_dirs();
    let mut names = vec!["deadpool.timer".to_string()];
    if let Some(instance) = config_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("deadpool-"))
    {
        names.push(format!("deadpool@{instance}.timer"));
    }
    for name in dirs.iter().flat_map(|d| instance_timers(d)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let wanted = std::fs::canonicalize(config_dir).unwrap_or_else(|_| config_dir.to_path_buf());
    names
        .iter()
        .find_map(|name| timer_for(&dirs, name, &wanted))
}

fn timer_for(dirs: &[PathBuf], name: &str, config_dir: &Path) -> Option<Timer> {
    let (file, timer) = load(dirs, name)?;
    let instance = name
        .split_once('@')
        .and_then(|(_, rest)| rest.strip_suffix(".timer"))
        .unwrap_or("");
    let service = last(&timer, "Timer", "Unit")
        .map(str::to_string)
        .unwrap_or_else(|| name.replace(".timer", ".service"));
    let (_, service) = load(dirs, &service)?;
    let runs_here = values(&service, "Service", "ExecStart")
        .into_iter()
        .filter_map(|line| config_of(line, &service))
        .map(|dir| dir.replace("%i", instance))
        .any(|dir| {
            std::fs::canonicalize(&dir).unwrap_or_else(|_| PathBuf::from(&dir)) == config_dir
        });
    if !runs_here {
        return None;
    }
    let (period, key) = ["OnUnitInactiveSec", "OnUnitActiveSec"]
        .into_iter()
        .flat_map(|key| {
            values(&timer, "Timer", key)
                .into_iter()
                .filter_map(timespan)
                .map(move |d| (d, key))
        })
        .min()?;
    Some(Timer {
        name: name.to_string(),
        file,
        period,
        key,
    })
}

/// The unit search path: `$SYSTEMD_UNIT_PATH` (a trailing `:` appends the usual dirs).
fn unit_dirs() -> Vec<PathBuf> {
    let defaults = || UNIT_DIRS.iter().map(PathBuf::from);
    match std::env::var("SYSTEMD_UNIT_PATH") {
        Ok(path) if !path.is_empty() => {
            let mut dirs: Vec<PathBuf> = (path.split(':').filter(|d| !d.is_empty()))
                .map(PathBuf::from)
                .collect();
            if path.ends_with(':') {
                dirs.extend(defaults());
            }
            dirs
        }
        _ => defaults().collect(),
    }
}

/// `deadpool@NAME.timer` entries in a unit dir and its `*.wants/` dirs.
fn instance_timers(dir: &Path) -> Vec<String> {
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    };
    let mut found = Vec::new();
    for name in names(dir) {
        if name.ends_with(".wants") {
            found.extend(names(&dir.join(&name)));
        } else {
            found.push(name);
        }
    }
    found.retain(|n| n.starts_with("deadpool@") && n.ends_with(".timer") && n != "deadpool@.timer");
    found.sort();
    found
}

/// A unit's lines: its file (the first in the path; an instance falls back to its template),
/// then its drop-ins in name order (the template's and the instance's, the first dir's file
/// of a name winning). `None`: not found, or masked.
fn load(dirs: &[PathBuf], name: &str) -> Option<(PathBuf, Vec<String>)> {
    let template = name.split_once('@').and_then(|(prefix, rest)| {
        rest.rfind('.')
            .map(|dot| format!("{prefix}@{}", &rest[dot..]))
    });
    let file = [Some(name), template.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|n| dirs.iter().map(|d| d.join(n)).find(|p| p.exists()))?;
    if std::fs::canonicalize(&file).ok()? == Path::new("/dev/null") {
        return None;
    }
    let mut text = std::fs::read_to_string(&file).ok()?;
    let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for unit in [template.as_deref(), Some(name)].into_iter().flatten() {
        for dir in dirs.iter().rev() {
            for entry in std::fs::read_dir(dir.join(format!("{unit}.d")))
                .into_iter()
                .flatten()
                .flatten()
            {
                let conf = entry.file_name().to_string_lossy().into_owned();
                if conf.ends_with(".conf") {
                    dropins.insert(conf, entry.path());
                }
            }
        }
    }
    for path in dropins.values() {
        text.push_str("\n[]\n");
        text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    // A drop-in restarts no section by itself: `[]` above only ends the previous one.
    let lines = text
        .replace("\\\n", " ")
        .lines()
        .map(str::to_string)
        .collect();
    Some((file, lines))
}

/// Every value of `key` in `section`, an empty assignment clearing the ones before.
fn values<'a>(lines: &'a [String], section: &str, key: &str) -> Vec<&'a str> {
    let mut current = "";
    let mut found = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
            continue;
        }
        if current != section || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            match v.trim() {
                "" => found.clear(),
                v => found.push(v),
            }
        }
    }
    found
}

fn last<'a>(lines: &'a [String], section: &str, key: &str) -> Option<&'a str> {
    values(lines, section, key).pop()
}

/// The config dir an `ExecStart=` line gives deadpool: `--config DIR`, else the service's
/// `DEADPOOL_CONFIG`, else the default. `None`: not a `tick` of deadpool.
fn config_of(exec: &str, service: &[String]) -> Option<String> {
    let words =
        crate::text::split_words(exec.trim_start_matches(['-', '@', '+', '!', ':'])).ok()?;
    let program = words.first()?;
    if !program.ends_with("deadpool") || !words.iter().any(|w| w == "tick") {
        return None;
    }
    let mut next = words.iter().skip(1);
    while let Some(word) = next.next() {
        if word == "--config" {
            return next.next().cloned();
        }
        if let Some(dir) = word.strip_prefix("--config=") {
            return Some(dir.to_string());
        }
    }
    let from_env = values(service, "Service", "Environment")
        .into_iter()
        .flat_map(|v| crate::text::split_words(v).unwrap_or_default())
        .filter_map(|w| w.strip_prefix("DEADPOOL_CONFIG=").map(str::to_string))
        .next_back();
    Some(from_env.unwrap_or_else(|| "/etc/deadpool".to_string()))
}

/// A systemd time span; a bare number is seconds there. `None`: zero or unreadable.
fn timespan(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return crate::settings::parse_duration(&format!("{value}s")).ok();
    }
    crate::settings::parse_duration(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(period: Duration) -> Timer {
        Timer {
            name: "deadpool.timer".into(),
            file: "/etc/systemd/system/deadpool.timer".into(),
            period,
            key: "OnUnitInactiveSec",
        }
    }

    #[test]
    fn a_timer_slower_than_the_gap_never_lets_a_pool_fail_over() {
        let s = Duration::from_secs;
        let t = s(5);
        assert_eq!(fit(&timer(s(5)), t), Fit::Same);
        assert_eq!(fit(&timer(Duration::from_millis(5400)), t), Fit::Same);
        assert!(matches!(fit(&timer(s(10)), t), Fit::Off(m) if m.contains("2.0 times")));
        assert!(matches!(fit(&timer(s(2)), t), Fit::Off(_)));
        assert!(
            matches!(fit(&timer(s(15)), t), Fit::Off(_)),
            "3 intervals is no gap"
        );
        match fit(&timer(s(30)), t) {
            Fit::Never(m) => assert!(
                m.contains("deadpool.timer starts a tick every 30s (OnUnitInactiveSec= in /etc/systemd/system/deadpool.timer), but tick_interval is 5s")
                    && m.contains("no pool ever fails over")
                    && m.contains("set OnUnitInactiveSec=5s in a drop-in (systemctl edit deadpool.timer), or tick_interval = \"30s\""),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unit_lines_are_read_as_systemd_reads_them() {
        let lines: Vec<String> = "[Unit]\nOnUnitInactiveSec=1s\n[Timer]\nOnUnitInactiveSec=5s\n# OnUnitInactiveSec=9s\nOnUnitInactiveSec=\nOnUnitInactiveSec = 30\n[]\n[Timer]\nUnit=x.service\n"
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(values(&lines, "Timer", "OnUnitInactiveSec"), vec!["30"]);
        assert_eq!(last(&lines, "Timer", "Unit"), Some("x.service"));
        assert_eq!(timespan("30"), Some(Duration::from_secs(30)));
        assert_eq!(timespan("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(timespan("0"), None);
        let service: Vec<String> = vec![
            "[Service]".into(),
            "Environment=DEADPOOL_CONFIG=/srv/dp".into(),
        ];
        for (exec, dir) in [
            (
                "/usr/bin/deadpool --config /etc/deadpool-%i tick",
                Some("/etc/deadpool-%i"),
            ),
            ("-/usr/bin/deadpool --config=/x tick", Some("/x")),
            ("/usr/bin/deadpool tick", Some("/srv/dp")),
            ("/usr/bin/deadpool --config /x report", None),
            ("/bin/true", None),
        ] {
            assert_eq!(config_of(exec, &service).as_deref(), dir, "{exec}");
        }
    }
}
