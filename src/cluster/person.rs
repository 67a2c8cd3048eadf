//! A person's chain (`promote`) from any member, with its own lease and chain key.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::client::{b64, int};
use super::member::{Member, lease_valid};
use super::pools::pool_json;
use crate::model::PoolState;
use crate::state::{Event, PoolRecord};

/// A person's chain (`promote`) from any member: it holds its own lease and the key
/// `<prefix>/chains/<pool>` for as long as it runs, so that the leader leaves the pool alone
/// meanwhile (and marks it `interrupted` if that lease runs out mid-chain); each of its
/// writes is guarded by the pool key's revision as it last wrote it.
#[derive(Debug)]
pub struct PersonChain<'a> {
    member: &'a Member,
    owner: String,
    lease: i64,
    renewed: Mutex<(Instant, Duration)>,
    started: Mutex<bool>,
}

impl Member {
    pub fn chain_key(&self, pool: &str) -> String {
        self.key(&format!("chains/{pool}"))
    }

    /// Grants the lease of a person's chain; `read_pool` must have been called first.
    pub fn person_chain(&self, owner: &str) -> Result<PersonChain<'_>> {
        let sent = Instant::now();
        let (lease, ttl) = self.client.grant(self.settings.lease_ttl)?;
        Ok(PersonChain {
            member: self,
            owner: owner.to_string(),
            lease,
            renewed: Mutex::new((sent, ttl)),
            started: Mutex::new(false),
        })
    }

    /// Reads the pools whose chain a person runs now (from any member); none when etcd
    /// does not answer (a leader's writes stay fenced by each pool key's revision then).
    pub fn find_chains_elsewhere(&self) -> Vec<String> {
        let prefix = self.key("chains/");
        let found: Vec<String> = match self.client.range_prefix(&prefix) {
            Ok(kvs) => kvs
                .into_iter()
                .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
                .collect(),
            Err(_) => Vec::new(),
        };
        *self.elsewhere.lock().unwrap_or_else(|p| p.into_inner()) = found.clone();
        found
    }

    /// Whether a person's chain runs on this pool now (as the last round found).
    pub fn chain_elsewhere(&self, pool: &str) -> bool {
        self.elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| p == pool)
    }
}

impl crate::chain::Guard for PersonChain<'_> {
    fn record(&self, events: &[Event]) {
        self.member.record_events(events);
    }

    fn check(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        let m = self.member;
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let sent = Instant::now();
        if *started {
            let ttl = m.client.keepalive(self.lease)?;
            if ttl.is_zero() {
                bail!("this promote's lease expired");
            }
            *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = (sent, ttl);
        }
        let Some(seen) = m.revision(&rec.name) else {
            bail!("pool {}: its state was not read from etcd", rec.name);
        };
        let pool_key = b64(&m.pool_key(&rec.name));
        let chain_key = b64(&m.chain_key(&rec.name));
        let mut compare = vec![
            json!({ "key": pool_key, "target": "MOD", "result": "EQUAL", "mod_revision": seen.to_string() }),
        ];
        let mut success = vec![
            json!({ "request_put": { "key": pool_key, "value": b64(&pool_json(rec, step).to_string()) } }),
        ];
        if !*started {
            compare.push(json!({ "key": chain_key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }));
            success.push(json!({ "request_put": { "key": chain_key, "value": b64(&self.owner), "lease": self.lease.to_string() } }));
        } else if rec.state != PoolState::FailingOver {
            success.push(json!({ "request_delete_range": { "key": chain_key } }));
        }
        let (ok, v) = m
            .client
            .txn(&json!({ "compare": compare, "success": success }))?;
        if !ok {
            bail!(
                "pool {} changed in etcd meanwhile (the leader or another person acted)",
                rec.name
            );
        }
        if let Some(r) = int(&v["header"]["revision"]) {
            m.set_revision(&rec.name, r);
        }
        *started = true;
        let (sent, ttl) = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        if !lease_valid(sent, ttl, Instant::now()) {
            bail!("this promote's lease may have expired by this member's clock");
        }
        Ok(())
    }
}
