//! A pool's state in etcd (`<prefix>/pools/<name>`): its JSON, and the writes fenced by the
//! leader key's create revision and the pool key's revision. The leader's chain guard.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use super::client::{b64, int};
use super::member::{Member, Standing, lease_valid};
use crate::model::{PoolState, Role};
use crate::state::{Event, Pause, PoolRecord, Snapshot};

/// A pool's record as kept in etcd, with the chain step in progress.
pub fn pool_json(rec: &PoolRecord, step: Option<&str>) -> Value {
    json!({
        "state": rec.state.as_str(),
        "active": rec.active.as_str(),
        "failures": rec.failures,
        "last_check_at": rec.last_check_at,
        "state_since": rec.state_since,
        "reason": rec.reason,
        "reason_kind": rec.reason_kind,
        "pause": rec.pause,
        "progress": rec.progress,
        "step": step,
    })
}

/// Reads a pool's record from etcd's JSON; `local` gives what etcd does not keep.
pub fn pool_from_json(name: &str, text: &str, local: Option<&PoolRecord>) -> Result<PoolRecord> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("pool {name} in etcd"))?;
    let bad = |what: &str| {
        anyhow!("pool {name} in etcd: bad or unknown `{what}` (written by a newer deadpool?)")
    };
    Ok(PoolRecord {
        name: name.to_string(),
        state: v["state"]
            .as_str()
            .and_then(PoolState::parse)
            .ok_or_else(|| bad("state"))?,
        active: v["active"]
            .as_str()
            .and_then(Role::parse)
            .ok_or_else(|| bad("active"))?,
        failures: v["failures"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("failures"))?,
        last_check_at: v["last_check_at"].as_i64(),
        last_system_check_at: local.and_then(|l| l.last_system_check_at),
        state_since: v["state_since"]
            .as_i64()
            .ok_or_else(|| bad("state_since"))?,
        reason: v["reason"].as_str().unwrap_or("").to_string(),
        reason_kind: v["reason_kind"].as_str().unwrap_or("").to_string(),
        pause: match &v["pause"] {
            Value::Null => None,
            p => Some(Pause {
                until: p["until"].as_i64().ok_or_else(|| bad("pause"))?,
                since: p["since"].as_i64().ok_or_else(|| bad("pause"))?,
                by: p["by"].as_str().unwrap_or("").to_string(),
                reason: p["reason"].as_str().unwrap_or("").to_string(),
            }),
        },
        progress: match &v["progress"] {
            Value::Null => Default::default(),
            p => crate::state::progress_from_json(name, &p.to_string()),
        },
    })
}

impl Member {
    /// Before a chain step: renews the lease, proves leadership with a guarded write of
    /// the pool's record (with the step about to start), and checks by our own clock that
    /// the lease cannot have expired. An error means: do not start the step.
    pub fn guard(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        let Standing::Leader { lease, .. } = self.role() else {
            bail!("this member is not the leader");
        };
        let sent = Instant::now();
        let ttl = self.client.keepalive(lease)?;
        if ttl.is_zero() {
            self.set_role(Standing::Unknown {
                why: "the leader lease expired".to_string(),
            });
            bail!("the leader lease expired");
        }
        if let Standing::Leader { revision, .. } = self.role() {
            self.set_role(Standing::Leader {
                revision,
                lease,
                sent,
                ttl,
            });
        }
        self.write_pool(rec, step)?;
        if !lease_valid(sent, ttl, Instant::now()) {
            bail!("the leader lease may have expired by this member's clock");
        }
        Ok(())
    }

    /// Writes a pool's record, guarded by our leader key's create revision: fails when
    /// this member does not lead (any more).
    pub fn write_pool(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        let Standing::Leader {
            revision,
            sent,
            ttl,
            ..
        } = self.role()
        else {
            bail!("this member is not the leader: pool state is written by the leader only");
        };
        if !lease_valid(sent, ttl, Instant::now()) {
            bail!("the leader lease may have expired by this member's clock");
        }
        let Some(seen) = self.revision(&rec.name) else {
            bail!("pool {}: its state was not read from etcd yet", rec.name);
        };
        let leader = b64(&self.leader_key());
        let pool_key = b64(&self.pool_key(&rec.name));
        let (ok, v) = self.client.txn(&json!({
            "compare": [
                { "key": leader, "target": "CREATE", "result": "EQUAL", "create_revision": revision.to_string() },
                { "key": pool_key, "target": "MOD", "result": "EQUAL", "mod_revision": seen.to_string() },
            ],
            "success": [{ "request_put": { "key": pool_key, "value": b64(&pool_json(rec, step).to_string()) } }],
            "failure": [{ "request_range": { "key": leader } }],
        }))?;
        if ok {
            if let Some(r) = int(&v["header"]["revision"]) {
                self.set_revision(&rec.name, r);
            }
            return Ok(());
        }
        let holder = v["responses"][0]["response_range"]["kvs"]
            .get(0)
            .and_then(|kv| int(&kv["create_revision"]));
        if holder == Some(revision) {
            self.forget_revision(&rec.name);
            bail!(
                "pool {} changed in etcd since this member read it (a person's reset, promote or pause): not overwritten",
                rec.name
            );
        }
        self.set_role(Standing::Unknown {
            why: "leadership lost (fenced write refused)".to_string(),
        });
        bail!(
            "leadership lost: the fenced write of pool {} was refused",
            rec.name
        )
    }

    /// A person's change from any member (reset, pause, resume): guarded by whoever holds
    /// the leader key now and by the pool's own revision, so it never overwrites a leader's
    /// write it did not see; and refused when the pool in etcd is no longer as the person
    /// saw it (`seen`: its state, active server and episode), as when the leader's chain
    /// ended meanwhile. A leader's routine writes (failure counts, check times) pass.
    pub fn write_pool_as_person(&self, rec: &PoolRecord, seen: &Snapshot) -> Result<()> {
        let leader_key = self.leader_key();
        let leader = self.client.range(&leader_key)?;
        let pool_key = self.pool_key(&rec.name);
        let pool = self.client.range(&pool_key)?;
        let now = pool
            .as_ref()
            .map(|kv| pool_from_json(&rec.name, &kv.value, None))
            .transpose()?;
        let now = Snapshot::of(now.as_ref());
        if !seen.still(&now) {
            bail!(
                "pool {} changed in etcd meanwhile (it is {}, active {}); nothing changed: look at `deadpool report`, then try again",
                rec.name,
                now.state.as_str(),
                now.active.as_str()
            );
        }
        let (ok, _) = self.client.txn(&json!({
            "compare": [
                { "key": b64(&leader_key), "target": "CREATE", "result": "EQUAL",
                  "create_revision": leader.map_or(0, |k| k.create_revision).to_string() },
                { "key": b64(&pool_key), "target": "MOD", "result": "EQUAL",
                  "mod_revision": pool.map_or(0, |k| k.mod_revision).to_string() },
            ],
            "success": [{ "request_put": { "key": b64(&pool_key), "value": b64(&pool_json(rec, None).to_string()) } }],
        }))?;
        if !ok {
            bail!("pool {} changed in etcd meanwhile; try again", rec.name);
        }
        Ok(())
    }

    /// A person's `reset OLD --forget` or `reset NEW --adopt OLD` from any member: `old`'s
    /// key deleted and, when adopting, `new` written under its own name, in one transaction
    /// guarded by both keys' revisions as read here; refused when etcd's record of `old` is
    /// no longer as the person saw it (`seen`). Without a key for `old`, there is nothing in
    /// etcd to drop: only this member's database held it.
    pub fn move_pool_as_person(
        &self,
        old: &str,
        seen: &Snapshot,
        new: Option<&PoolRecord>,
    ) -> Result<()> {
        let old_key = self.pool_key(old);
        let old_kv = self.client.range(&old_key)?;
        if let Some(kv) = &old_kv {
            let now = Snapshot::of(Some(&pool_from_json(old, &kv.value, None)?));
            if !seen.still(&now) {
                bail!(
                    "pool {old} changed in etcd meanwhile (it is {}, active {}); nothing changed: look at `deadpool report`, then try again",
                    now.state.as_str(),
                    now.active.as_str()
                );
            }
        }
        let revision = |kv: &Option<super::client::Kv>| kv.as_ref().map_or(0, |k| k.mod_revision);
        let mut compare = vec![json!({
            "key": b64(&old_key), "target": "MOD", "result": "EQUAL",
            "mod_revision": revision(&old_kv).to_string(),
        })];
        let mut success = vec![json!({ "request_delete_range": { "key": b64(&old_key) } })];
        if let Some(rec) = new {
            let new_key = self.pool_key(&rec.name);
            let new_kv = self.client.range(&new_key)?;
            compare.push(json!({
                "key": b64(&new_key), "target": "MOD", "result": "EQUAL",
                "mod_revision": revision(&new_kv).to_string(),
            }));
            success.push(json!({ "request_put": {
                "key": b64(&new_key), "value": b64(&pool_json(rec, None).to_string()),
            } }));
        }
        let (ok, _) = self
            .client
            .txn(&json!({ "compare": compare, "success": success }))?;
        if !ok {
            bail!("pool {old} changed in etcd meanwhile; nothing changed: try again");
        }
        Ok(())
    }

    /// A pool's record in etcd, if any.
    pub fn read_pool(&self, name: &str, local: Option<&PoolRecord>) -> Result<Option<PoolRecord>> {
        let kv = self.client.range(&self.pool_key(name))?;
        self.set_revision(name, kv.as_ref().map_or(0, |k| k.mod_revision));
        let step = kv
            .as_ref()
            .and_then(|k| serde_json::from_str::<Value>(&k.value).ok())
            .and_then(|v| v["step"].as_str().map(str::to_string));
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        match step {
            Some(step) => steps.insert(name.to_string(), step),
            None => steps.remove(name),
        };
        drop(steps);
        kv.map(|kv| pool_from_json(name, &kv.value, local))
            .transpose()
    }

    /// The chain step etcd's record of the pool says was started last, if any.
    pub fn step_in_progress(&self, pool: &str) -> Option<String> {
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pool)
            .cloned()
    }
}

impl crate::chain::Guard for Member {
    fn check(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        self.guard(rec, step)
    }

    fn record(&self, events: &[Event]) {
        self.record_events(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_records_round_trip() {
        let mut rec = PoolRecord::new("db", 5);
        rec.state = PoolState::FailedOver;
        rec.active = Role::SECONDARY;
        rec.failures = 3;
        rec.reason = "done".to_string();
        let text = pool_json(&rec, Some("vip")).to_string();
        let back = pool_from_json("db", &text, None).unwrap();
        assert_eq!(back.state, PoolState::FailedOver);
        assert_eq!(back.active, Role::SECONDARY);
        assert_eq!(back.failures, 3);
        assert_eq!(back.reason, "done");
        assert!(pool_from_json("db", r#"{"state":"weird"}"#, None).is_err());
    }
}
