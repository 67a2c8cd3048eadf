//! Locks left by pools no longer configured. A pool renamed (its file under `pools/`) or
//! removed while locked keeps its record, and is reported, never forgotten; a configured
//! pool with one of its servers is held back: it does not fail over, by a tick or by hand,
//! until a person carries the lock over (`reset NEW --adopt OLD`) or drops it
//! (`reset OLD --forget`). Pure rules over plain data; the state store reads the records.

use crate::model::{PoolServers, PoolState, Role, Status};
use crate::settings::host_key;

/// One pool row as recorded, with the servers the config last named for it (`None`: not
/// recorded, a row written before servers were).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub state: PoolState,
    pub active: Role,
    pub since: i64,
    pub servers: Option<Vec<String>>,
}

/// A locked pool that is no longer configured, and the configured pools it holds back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub record: Recorded,
    pub holds: Vec<String>,
}

/// Whether a pool in `state` holds a lock that must outlive its name: locked, or in the
/// middle of a chain (which a tick will find interrupted).
pub fn keeps_a_lock(state: PoolState) -> bool {
    state.is_locked() || state == PoolState::FailingOver
}

/// The locked records whose names are not configured, each with the configured pools it
/// holds back: those sharing a server with it (hosts compared by [`host_key`]: a renamed
/// pool is often edited too, and it is one server that must not be failed away from
/// twice). Where its servers were never recorded, every configured pool without a record
/// of its own, as a renamed one is.
pub fn find(configured: &[PoolServers], recorded: &[Recorded]) -> Vec<Orphan> {
    let is_configured = |name: &str| configured.iter().any(|c| c.name == name);
    let has_record = |name: &str| recorded.iter().any(|r| r.name == name);
    recorded
        .iter()
        .filter(|r| keeps_a_lock(r.state) && !is_configured(&r.name))
        .map(|r| {
            let holds = configured
                .iter()
                .filter(|c| match &r.servers {
                    Some(servers) => c
                        .servers
                        .iter()
                        .any(|a| servers.iter().any(|b| host_key(a) == host_key(b))),
                    None => !has_record(c.name),
                })
                .map(|c| c.name.to_string())
                .collect();
            Orphan {
                record: r.clone(),
                holds,
            }
        })
        .collect()
}

/// The orphan that holds `pool` back, if any.
pub fn holding<'a>(orphans: &'a [Orphan], pool: &str) -> Option<&'a Orphan> {
    orphans.iter().find(|o| o.holds.iter().any(|h| h == pool))
}

impl Orphan {
    /// Its active server in words: `secondary (db2)`, or the role alone when its servers
    /// were not recorded.
    pub fn active(&self) -> String {
        let r = &self.record;
        match r.servers.as_ref().and_then(|s| s.get(r.active.index())) {
            Some(address) => format!("{} ({address})", r.active.as_str()),
            None => r.active.as_str().to_string(),
        }
    }

    /// How bad it is in a report: a lock after a good failover is a WARNING, as when its
    /// pool was configured; any other (a failed or interrupted chain) is CRITICAL.
    pub fn status(&self) -> Status {
        if self.record.state == PoolState::FailedOver {
            Status::Warning
        } else {
            Status::Critical
        }
    }

    /// The report's line for the orphan itself.
    pub fn message(&self) -> String {
        let mut text = format!(
            "pool {} is {}, active {}, but no longer configured: its lock is kept",
            self.record.name,
            self.record.state.as_str(),
            self.active()
        );
        if !self.holds.is_empty() {
            text.push_str(&format!(
                " and holds back {} (the same servers)",
                self.holds.join(", ")
            ));
        }
        text
    }

    /// Why `pool` (one it holds) does not fail over.
    pub fn held_message(&self, pool: &str) -> String {
        format!(
            "not armed: it has the servers of pool {}, which is {} (active {}) and no longer configured; {pool} does not fail over until that lock is carried over or dropped",
            self.record.name,
            self.record.state.as_str(),
            self.active()
        )
    }

    /// What to do, naming the configured pool when there is one.
    pub fn hint(&self) -> String {
        let old = &self.record.name;
        let new = self.holds.first().map_or("NEW", String::as_str);
        format!(
            "if {old} was renamed {new}: `deadpool reset {new} --adopt {old}` carries its lock over; if {old} is gone for good: `deadpool reset {old} --forget` drops it ({new} then arms on its configured primary)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, state: PoolState, servers: Option<&[&str]>) -> Recorded {
        Recorded {
            name: name.to_string(),
            state,
            active: Role::SECONDARY,
            since: 1,
            servers: servers.map(|s| s.iter().map(|a| a.to_string()).collect()),
        }
    }

    fn owned(servers: &[&str]) -> Vec<String> {
        servers.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn orphans_table() {
        let (a, b, c) = (
            owned(&["db1", "db2"]),
            owned(&["DB2.", "db9"]),
            owned(&["db7", "db8"]),
        );
        let configured = [
            PoolServers {
                name: "orders",
                servers: &a,
            },
            PoolServers {
                name: "other",
                servers: &b,
            },
            PoolServers {
                name: "cache",
                servers: &c,
            },
        ];
        let failed = PoolState::FailedOver;
        /// An orphan expected: its name and the pools it holds back.
        type Expected<'a> = (&'a str, Vec<&'a str>);
        // (records, expected orphans)
        let rows: Vec<(Vec<Recorded>, Vec<Expected>)> = vec![
            // Renamed `orders_db` -> `orders`: its servers are orders's; db2 is other's too.
            (
                vec![rec("orders_db", failed, Some(&["db1", "db2"]))],
                vec![("orders_db", vec!["orders", "other"])],
            ),
            // Configured pools are never orphans; unlocked records are not kept.
            (
                vec![
                    rec("orders", failed, Some(&["db1", "db2"])),
                    rec("gone", PoolState::Armed, Some(&["db1", "db2"])),
                    rec("blocked", PoolState::Blocked, Some(&["db1"])),
                ],
                vec![],
            ),
            // Removed for good: its servers are nobody's, it holds nothing back.
            (
                vec![rec("old", PoolState::Interrupted, Some(&["db5", "db6"]))],
                vec![("old", vec![])],
            ),
            (
                vec![rec("mid", PoolState::FailingOver, Some(&["db8"]))],
                vec![("mid", vec!["cache"])],
            ),
            // Servers never recorded: every configured pool without a record is held.
            (
                vec![
                    rec("legacy", PoolState::FailoverFailed, None),
                    rec("orders", PoolState::Armed, Some(&["db1", "db2"])),
                ],
                vec![("legacy", vec!["other", "cache"])],
            ),
        ];
        for (records, expected) in rows {
            let found: Vec<(String, Vec<String>)> = find(&configured, &records)
                .into_iter()
                .map(|o| (o.record.name, o.holds))
                .collect();
            let expected: Vec<(String, Vec<String>)> = expected
                .into_iter()
                .map(|(n, h)| (n.to_string(), h.into_iter().map(String::from).collect()))
                .collect();
            assert_eq!(found, expected, "{records:?}");
        }
    }

    #[test]
    fn words_name_the_pools_and_the_commands() {
        let orphan = Orphan {
            record: rec("orders_db", PoolState::FailedOver, Some(&["db1", "db2"])),
            holds: vec!["orders".to_string()],
        };
        assert_eq!(orphan.status(), Status::Warning);
        assert_eq!(
            orphan.message(),
            "pool orders_db is failed_over, active secondary (db2), but no longer configured: its lock is kept and holds back orders (the same servers)"
        );
        assert!(orphan.held_message("orders").starts_with(
            "not armed: it has the servers of pool orders_db, which is failed_over (active secondary (db2))"
        ));
        let hint = orphan.hint();
        assert!(
            hint.contains("`deadpool reset orders --adopt orders_db`")
                && hint.contains("`deadpool reset orders_db --forget`"),
            "{hint}"
        );
        let legacy = Orphan {
            record: rec("x", PoolState::Interrupted, None),
            holds: vec![],
        };
        assert_eq!(legacy.active(), "secondary");
        assert_eq!(legacy.status(), Status::Critical);
        assert!(legacy.hint().contains("`deadpool reset NEW --adopt x`"));
    }
}
