//! Several watcher hosts (`[cluster]` in deadpool.toml): one leader, elected through an etcd
//! v3 lease, decides and runs chains; the pool state that must survive a change of leader
//! lives in etcd under `<prefix>/pools/<name>`, and every write of it is a transaction
//! guarded by the leader key's create revision (fencing): a member that lost leadership
//! cannot write. Without `[cluster]`, nothing here runs.
//!
//! The client speaks etcd's documented v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/grant`, `/v3/lease/keepalive`) over a small blocking HTTP/1.1 client: deadpool
//! stays a one-shot program without an async runtime, and every call has a deadline.
//!
//! Below `config`: [`settings`] (the `[cluster]` table; what `config` imports, and it
//! imports nothing above it), [`http`] (one bounded HTTP/1.1 request), [`client`] (the
//! gateway's calls), [`member`] (the leader lease and the [`Member`]), [`history`] (chain
//! events kept in etcd) and [`status`] (heartbeats, `cluster.json` for `report`,
//! `check-config`'s probe). Above `chain`, whose `Guard` they implement: [`pools`] (fenced
//! pool-state writes, the leader's guard) and [`person`] (a person's chain from any
//! member).

mod client;
pub mod history;
mod http;
pub mod member;
pub mod person;
pub mod pools;
pub mod settings;
pub mod status;

pub use member::{Member, Standing};
pub use status::{probe, status_line};
