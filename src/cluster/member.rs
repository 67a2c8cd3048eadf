//! This member of the cluster and the leader lease: who leads (the pure rules, table-tested)
//! and the campaign that takes or renews the leader key each round.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde_json::json;

use super::client::{Client, Kv, b64, int};
use super::settings::Settings;
/// Whether a lease renewed by a request sent at `sent` (our clock) with `ttl` granted can
/// still be valid at `now`: etcd counts the TTL from when it received the request, which
/// is after we sent it, so our own clock errs on the safe side.
pub fn lease_valid(sent: Instant, ttl: Duration, now: Instant) -> bool {
    now < sent + ttl
}

/// What this member is, for one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the leader key: its lease was renewed by a request sent at `sent`.
    Leader {
        revision: i64,
        lease: i64,
        sent: Instant,
        ttl: Duration,
    },
    /// Another member leads (`lease_left`: how long its lease has left, as etcd says).
    Follower {
        leader: String,
        lease_left: Option<Duration>,
    },
    /// etcd could not be asked (unreachable, no quorum): nobody may run a chain here.
    Unknown { why: String },
}

/// A leader key as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: String,
    pub lease: i64,
    pub create_revision: i64,
}

/// What to do with the leader key this round (the decision of [`Member::campaign`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Campaign {
    /// Nobody leads: grant a lease and create the key if it is still absent.
    Create,
    /// We lead: renew our lease.
    Renew,
    /// Another member leads.
    Follow,
}

pub fn campaign(me: &str, key: Option<&LeaderKey>) -> Campaign {
    match key {
        None => Campaign::Create,
        Some(k) if k.name == me => Campaign::Renew,
        Some(_) => Campaign::Follow,
    }
}

/// This member, for one command.
#[derive(Debug)]
pub struct Member {
    pub settings: Settings,
    pub(super) client: Client,
    role: Mutex<Standing>,
    /// Each pool key's mod revision as this member last read or wrote it: a leader's write
    /// never overwrites a change it did not see (a person's reset from another member).
    revisions: Mutex<HashMap<String, i64>>,
    /// The pools whose chain a person runs now (`promote`, from any member), as the last
    /// round found them: the leader leaves them alone.
    pub(super) elsewhere: Mutex<Vec<String>>,
    /// The chain step each pool's record in etcd says is in progress (for the message of
    /// a new leader that finds it interrupted).
    pub(super) steps: Mutex<HashMap<String, String>>,
}

impl Member {
    pub fn new(settings: &Settings) -> Member {
        Member {
            client: Client::new(settings),
            settings: settings.clone(),
            role: Mutex::new(Standing::Unknown {
                why: "no round yet".to_string(),
            }),
            revisions: Mutex::default(),
            elsewhere: Mutex::default(),
            steps: Mutex::default(),
        }
    }

    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.settings.prefix)
    }

    pub fn leader_key(&self) -> String {
        self.key("leader")
    }

    pub fn pool_key(&self, pool: &str) -> String {
        self.key(&format!("pools/{pool}"))
    }

    pub fn role(&self) -> Standing {
        self.role.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role(), Standing::Leader { .. })
    }

    pub(super) fn set_role(&self, role: Standing) {
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = role;
    }

    /// Takes or renews the leader lease; the result is kept for the guards.
    pub fn campaign(&self) -> Standing {
        let role = match self.try_campaign() {
            Ok(r) => r,
            Err(e) => Standing::Unknown {
                why: format!("{e:#}"),
            },
        };
        self.set_role(role.clone());
        role
    }

    fn read_leader(&self) -> Result<Option<LeaderKey>> {
        Ok(self.client.range(&self.leader_key())?.map(|kv| LeaderKey {
            name: kv.value,
            lease: kv.lease,
            create_revision: kv.create_revision,
        }))
    }

    fn try_campaign(&self) -> Result<Standing> {
        let me = &self.settings.name;
        let sent = Instant::now();
        let key = self.read_leader()?;
        match (campaign(me, key.as_ref()), key) {
            (Campaign::Renew, Some(k)) => {
                let ttl = self.client.keepalive(k.lease)?;
                if ttl.is_zero() {
                    return Ok(Standing::Unknown {
                        why: "our lease expired; the leader key goes with it".to_string(),
                    });
                }
                Ok(Standing::Leader {
                    revision: k.create_revision,
                    lease: k.lease,
                    sent,
                    ttl,
                })
            }
            (Campaign::Follow, Some(k)) => Ok(Standing::Follower {
                lease_left: self.client.time_to_live(k.lease).ok().flatten(),
                leader: k.name,
            }),
            _ => {
                let sent = Instant::now();
                let (lease, ttl) = self.client.grant(self.settings.lease_ttl)?;
                let leader = b64(&self.leader_key());
                let (won, v) = self.client.txn(&json!({
                    "compare": [{ "key": leader, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                    "success": [{ "request_put": { "key": leader, "value": b64(me), "lease": lease.to_string() } }],
                    "failure": [{ "request_range": { "key": leader } }],
                }))?;
                if won {
                    let revision = int(&v["header"]["revision"])
                        .ok_or_else(|| anyhow!("etcd txn: no revision in {v}"))?;
                    crate::info!("cluster: {me} is the leader now (revision {revision})");
                    return Ok(Standing::Leader {
                        revision,
                        lease,
                        sent,
                        ttl,
                    });
                }
                let _ = self.client.revoke(lease);
                let kv = v["responses"][0]["response_range"]["kvs"]
                    .get(0)
                    .map(Kv::from_json)
                    .transpose()?;
                Ok(Standing::Follower {
                    leader: kv.map(|k| k.value).unwrap_or_default(),
                    lease_left: None,
                })
            }
        }
    }

    /// The pool keys' revisions this member last saw (read by [`Member::read_pool`], moved
    /// on by its own fenced writes).
    fn revisions(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn revision(&self, pool: &str) -> Option<i64> {
        self.revisions().get(pool).copied()
    }

    pub(super) fn set_revision(&self, pool: &str, revision: i64) {
        self.revisions().insert(pool.to_string(), revision);
    }

    pub(super) fn forget_revision(&self, pool: &str) {
        self.revisions().remove(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_validity_by_our_own_clock() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        for (after_ms, valid) in [(0, true), (9_999, true), (10_000, false), (60_000, false)] {
            assert_eq!(
                lease_valid(sent, ttl, sent + Duration::from_millis(after_ms)),
                valid,
                "{after_ms} ms"
            );
        }
    }

    #[test]
    fn campaign_decisions() {
        let k = |name: &str| LeaderKey {
            name: name.to_string(),
            lease: 7,
            create_revision: 3,
        };
        assert_eq!(campaign("dp1", None), Campaign::Create);
        assert_eq!(campaign("dp1", Some(&k("dp1"))), Campaign::Renew);
        assert_eq!(campaign("dp1", Some(&k("dp2"))), Campaign::Follow);
        assert_eq!(campaign("dp1", Some(&k("dp10"))), Campaign::Follow);
    }
}
