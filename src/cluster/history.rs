//! Chain events kept in etcd (`<prefix>/history/`), so that `history` on any member shows
//! the chains every member ran.

use anyhow::Result;
use serde_json::json;

use super::client::{Kv, b64, b64_bytes, int, prefix_end};
use super::member::Member;
use crate::state::{Event, EventText};

/// How many chain events etcd keeps (all pools together): the oldest go first.
pub const HISTORY_KEPT: usize = 1000;
/// Longest captured output of one event kept in etcd.
const HISTORY_OUTPUT: usize = 2048;

impl Member {
    /// Puts chain events under `<prefix>/history/`, keyed by time and member, and prunes
    /// the oldest beyond [`HISTORY_KEPT`]. Best effort: a failure is logged, never a reason
    /// to stop a chain.
    pub fn record_events(&self, events: &[Event]) {
        if let Err(e) = self.try_record_events(events) {
            crate::warn!("cluster: cannot keep chain events in etcd: {e:#}");
        }
    }

    fn try_record_events(&self, events: &[Event]) -> Result<()> {
        let prefix = self.key("history/");
        for (n, e) in events.iter().enumerate() {
            let mut e = e.clone();
            e.output = crate::text::truncate(&e.output, HISTORY_OUTPUT);
            e.actor = format!("{}@{}", e.actor, self.settings.name);
            let key = format!("{prefix}{:015}-{}-{n:04}", e.at, self.settings.name);
            self.client.put(&key, &serde_json::to_string(&e)?)?;
        }
        let v = self.client.call(
            "/v3/kv/range",
            &json!({ "key": b64(&prefix), "range_end": b64_bytes(&prefix_end(prefix.as_bytes())), "count_only": true }),
        )?;
        let count = int(&v["count"]).unwrap_or(0) as usize;
        if count > HISTORY_KEPT {
            let v = self.client.call(
                "/v3/kv/range",
                &json!({ "key": b64(&prefix), "range_end": b64_bytes(&prefix_end(prefix.as_bytes())),
                         "keys_only": true, "limit": (count - HISTORY_KEPT).to_string() }),
            )?;
            if let Some(last) = v["kvs"].as_array().and_then(|a| a.last()) {
                let last = Kv::from_json(last)?.key;
                self.client.call(
                    "/v3/kv/deleterange",
                    &json!({ "key": b64(&prefix), "range_end": b64(&format!("{last}\0")) }),
                )?;
            }
        }
        Ok(())
    }

    /// The chain events other members kept in etcd, oldest first. An entry that is not JSON
    /// or holds a kind or status this build does not know (a newer member's) is left out.
    pub fn others_events(&self) -> Result<Vec<Event>> {
        let prefix = self.key("history/");
        let mine = format!("@{}", self.settings.name);
        Ok(self
            .client
            .range_prefix(&prefix)?
            .into_iter()
            .filter_map(|kv| serde_json::from_str::<EventText>(&kv.value).ok())
            .filter_map(|e| e.typed().ok())
            .filter(|e| !e.actor.ends_with(&mine))
            .collect())
    }
}
