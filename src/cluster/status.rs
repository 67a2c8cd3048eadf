//! What the cluster looks like: each member's heartbeat, `<state_dir>/cluster.json` (written
//! after each round, read by `report`), and `check-config`'s probe of etcd.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::client::{Client, b64};
use super::member::{Member, Standing};
use super::settings::Settings;
use crate::model::Status;

/// `check-config`'s probe: etcd answers, is 3.4 or newer, the prefix takes a write (a
/// probe key, deleted at once), and who leads.
pub fn probe(settings: &Settings) -> Result<String> {
    let client = Client::new(settings);
    let version = client.version()?;
    if !version_ok(&version) {
        bail!("etcd {version} answers; deadpool needs 3.4 or newer");
    }
    let key = format!("{}/check-config/{}", settings.prefix, settings.name);
    client
        .put(&key, "probe")
        .with_context(|| format!("the prefix {} does not take a write", settings.prefix))?;
    client.call("/v3/kv/deleterange", &json!({ "key": b64(&key) }))?;
    let leader = client.range(&format!("{}/leader", settings.prefix))?;
    Ok(format!(
        "cluster: etcd {version} answers, prefix {} is writable, {}; this member is {}",
        settings.prefix,
        match leader {
            Some(kv) => format!("leader {}", kv.value),
            None => "no leader yet".to_string(),
        },
        settings.name
    ))
}

/// Whether an etcd version string is 3.4 or newer.
pub fn version_ok(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (3, 4)
}

/// What `report` shows of the cluster: one line and its severity, from `cluster.json`.
pub fn status_line(
    state_dir: &Path,
    now_ms: i64,
    stale_ms: i64,
) -> Option<(crate::model::Status, String)> {
    let text = std::fs::read_to_string(state_dir.join("cluster.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let at = v["at"].as_i64().unwrap_or(0);
    let members: Vec<String> = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    format!(
                        "{} ticked {}s ago",
                        m["name"].as_str().unwrap_or("?"),
                        (now_ms - m["last_tick"].as_i64().unwrap_or(0)) / 1000
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (status, mut line) = match v["role"].as_str() {
        Some("leader") | Some("follower") => (
            Status::Ok,
            format!(
                "cluster: {} is {}, leader {} (lease {:.1}s left)",
                v["member"].as_str().unwrap_or("?"),
                v["role"].as_str().unwrap_or("?"),
                v["leader"].as_str().unwrap_or("?"),
                v["lease_left_ms"].as_i64().unwrap_or(0) as f64 / 1000.0
            ),
        ),
        _ => (
            Status::Critical,
            format!(
                "cluster: etcd unreachable or without quorum, no failover possible: {}",
                v["error"].as_str().unwrap_or("?")
            ),
        ),
    };
    if !members.is_empty() {
        line.push_str(&format!("; {}", members.join(", ")));
    }
    if now_ms - at > stale_ms {
        return Some((
            Status::Critical,
            format!("{line} (cluster status is {}s old)", (now_ms - at) / 1000),
        ));
    }
    Some((status, crate::text::one_line(&line).replace('|', "/")))
}

impl Member {
    /// Records this member's tick in etcd (not fenced: each member writes only its own).
    pub fn heartbeat(&self, at_ms: i64) -> Result<()> {
        let role = match self.role() {
            Standing::Leader { .. } => "leader".to_string(),
            Standing::Follower { leader, .. } => format!("follower of {leader}"),
            Standing::Unknown { .. } => "unknown".to_string(),
        };
        self.client.put(
            &self.key(&format!("members/{}", self.settings.name)),
            &json!({ "last_tick": at_ms, "role": role }).to_string(),
        )
    }

    /// Every member's last tick (ms) as recorded in etcd.
    pub fn members(&self) -> Result<Vec<(String, i64, String)>> {
        let prefix = self.key("members/");
        Ok(self
            .client
            .range_prefix(&prefix)?
            .into_iter()
            .filter_map(|kv| {
                let v: Value = serde_json::from_str(&kv.value).ok()?;
                Some((
                    kv.key.strip_prefix(&prefix)?.to_string(),
                    v["last_tick"].as_i64()?,
                    v["role"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect())
    }

    /// Writes what this member knows of the cluster to `<state_dir>/cluster.json`, for
    /// `report` (which reads no network).
    pub fn save_status(&self, state_dir: &Path, now_ms: i64) {
        // Without etcd, no second wait for the members' ticks.
        let members = match self.role() {
            Standing::Unknown { .. } => Vec::new(),
            _ => self.members().unwrap_or_default(),
        };
        let status = match self.role() {
            Standing::Leader { sent, ttl, .. } => json!({
                "role": "leader", "leader": self.settings.name,
                "lease_left_ms": (sent + ttl).saturating_duration_since(Instant::now()).as_millis() as i64,
            }),
            Standing::Follower { leader, lease_left } => json!({
                "role": "follower", "leader": leader,
                "lease_left_ms": lease_left.map(|d| d.as_millis() as i64),
            }),
            Standing::Unknown { why } => json!({ "role": "unknown", "error": why }),
        };
        let mut status = status;
        status["member"] = json!(self.settings.name);
        status["at"] = json!(now_ms);
        status["members"] = members
            .iter()
            .map(|(n, t, r)| json!({ "name": n, "last_tick": t, "role": r }))
            .collect();
        let path = state_dir.join("cluster.json");
        let tmp = state_dir.join("cluster.json.tmp");
        if let Err(e) =
            std::fs::write(&tmp, status.to_string()).and_then(|_| std::fs::rename(&tmp, &path))
        {
            crate::warn!("cannot write {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_versions() {
        for (v, ok) in [
            ("3.4.23", true),
            ("3.5.0", true),
            ("4.0.0", true),
            ("3.3.27", false),
            ("2.3.8", false),
            ("", false),
        ] {
            assert_eq!(version_ok(v), ok, "{v}");
        }
    }
}
