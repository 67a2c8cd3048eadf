//! What a failover lost (SPEC 6, step 2e), as a pure function: the old primary's last known
//! position against what the new primary held when it was made writable, and the
//! difference in words ("nothing lost"; "at most 3 transactions lost (GTIDs 0-1-55 to
//! 0-1-57), last seen 0.8s before the outage"; "unknown: no position recorded"). The chain
//! gathers the positions, history and the report keep and show the [`Loss`]; nothing here
//! does I/O.
//!
//! The old primary's position is what its last healthy check found: writes it took after
//! that check are known to nobody, which the words say ("last seen ... before the
//! outage"). A salvage of its binary log (a later change) gives a truer end, and the
//! transactions it carried over: [`OldFrom::SalvagedBinlog`] and [`Salvage`] hold them.

use serde::{Deserialize, Serialize};

use crate::position::{Position, Unit, missing_gtids};

/// Where the old primary's last known position comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OldFrom {
    /// The last check that found it healthy: what it had written by then.
    LastHealthyCheck,
    /// The end of its binary log, read on its host after the outage: all it wrote.
    SalvagedBinlog,
}

/// Where the new primary's position comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewFrom {
    /// Read by the promoting step right after the promotion.
    Promotion,
    /// What it had received when the failover was decided: the chain has no promoting
    /// step, or the step could not read it after the promotion.
    Decision,
    /// The promoting step did not make it writable.
    NotPromoted,
}

/// The old primary's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldPrimary {
    pub address: String,
    pub position: Option<Position>,
    /// When it was seen there (ms since the epoch).
    pub seen_at: Option<i64>,
    pub from: OldFrom,
}

/// The new primary's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPrimary {
    pub address: String,
    pub position: Option<Position>,
    pub from: NewFrom,
    /// How it was read, in the server's terms (`pg_last_wal_replay_lsn() after the
    /// promotion`), or why it was not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub how: String,
    /// PostgreSQL: the timeline it was on before its promotion (which starts a new one),
    /// as it was received when the failover was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_before: Option<u32>,
}

/// Transactions a salvage of the old primary's binary log carried over to the new primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Salvage {
    /// The host whose binary log was read.
    pub host: String,
    pub transactions: u64,
}

/// What the difference counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    Transactions,
    /// Of one binary log file.
    BinlogBytes,
    /// Whole binary log files further on (their sizes are not known).
    BinlogFiles,
    WalBytes,
    /// Of Redis's replication stream.
    StreamBytes,
}

/// The comparison's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The new primary held everything the old one was last known to have.
    Nothing,
    /// The old primary had this much more when last seen.
    AtMost {
        amount: u64,
        of: Amount,
        /// Which transactions, where GTIDs say it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtids: Option<String>,
    },
    /// Nothing to compare: a position not recorded, a promotion that did not happen.
    Unknown { why: String },
    /// The positions are of different histories (PostgreSQL timelines): no comparison
    /// holds, and something is not as the failover assumed.
    Incomparable { why: String },
}

/// What one failover lost, as history and the report keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// The verdict in words, as written when the failover ended.
    pub words: String,
    pub verdict: Verdict,
    pub unit: Unit,
    pub old_primary: OldPrimary,
    pub new_primary: NewPrimary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salvaged: Option<Salvage>,
    /// The first check that found the old primary down (ms since the epoch); `None` for a
    /// promotion while it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_at: Option<i64>,
    /// When the chain started (ms since the epoch).
    pub started_at: i64,
}

/// What [`assess`] compares.
#[derive(Debug, Clone)]
pub struct Input {
    pub unit: Unit,
    pub old: OldPrimary,
    pub new: NewPrimary,
    pub salvaged: Option<Salvage>,
    pub outage_at: Option<i64>,
    pub started_at: i64,
}

/// Compares the two primaries' positions: the verdict and its words.
pub fn assess(input: Input) -> Loss {
    let verdict = verdict(input.unit, &input.old, &input.new);
    let mut loss = Loss {
        words: String::new(),
        verdict,
        unit: input.unit,
        old_primary: input.old,
        new_primary: input.new,
        salvaged: input.salvaged,
        outage_at: input.outage_at,
        started_at: input.started_at,
    };
    loss.words = loss.describe();
    loss
}

fn verdict(unit: Unit, old: &OldPrimary, new: &NewPrimary) -> Verdict {
    if new.from == NewFrom::NotPromoted {
        return Verdict::Unknown {
            why: new.how.clone(),
        };
    }
    let (o, n) = match (&old.position, &new.position) {
        (Some(o), Some(n)) => (o, n),
        (None, None) => {
            return Verdict::Unknown {
                why: "no position recorded".to_string(),
            };
        }
        (None, Some(_)) => {
            return Verdict::Unknown {
                why: format!("no position recorded of the old primary {}", old.address),
            };
        }
        (Some(_), None) => {
            return Verdict::Unknown {
                why: format!("no position recorded of the new primary {}", new.address),
            };
        }
    };
    if let Some(why) = timelines_apart(new.timeline_before, o.timeline) {
        return Verdict::Incomparable { why };
    }
    if let (Some(a), Some(b)) = (&o.gtid, &n.gtid)
        && let Some((count, which)) = missing_gtids(a, b)
    {
        return match count {
            0 => Verdict::Nothing,
            n => Verdict::AtMost {
                amount: n,
                of: Amount::Transactions,
                gtids: Some(which),
            },
        };
    }
    // Across a promotion WAL locations keep counting: they compare by location alone.
    if (n.file, n.offset) >= (o.file, o.offset) {
        return Verdict::Nothing;
    }
    if let (Some(a), Some(b)) = (o.transactions, n.transactions)
        && a > b
    {
        return Verdict::AtMost {
            amount: a - b,
            of: Amount::Transactions,
            gtids: None,
        };
    }
    let (amount, of) = match unit {
        Unit::Wal => (o.offset - n.offset, Amount::WalBytes),
        Unit::Redis => (o.offset - n.offset, Amount::StreamBytes),
        Unit::Binlog if o.file == n.file => (o.offset - n.offset, Amount::BinlogBytes),
        Unit::Binlog => (o.file - n.file, Amount::BinlogFiles),
    };
    Verdict::AtMost {
        amount,
        of,
        gtids: None,
    }
}

/// Why the new primary's timeline before its promotion and the old primary's make their
/// WAL locations of different histories, when they do.
fn timelines_apart(before: Option<u32>, old: Option<u32>) -> Option<String> {
    let (mine, theirs) = (before?, old?);
    if mine > theirs {
        Some(format!(
            "the new primary was on timeline {mine} before its promotion, newer than the old primary's timeline {theirs}: it followed a promotion the old primary did not, so their WAL locations do not compare"
        ))
    } else if mine < theirs {
        Some(format!(
            "the new primary was on timeline {mine}, older than the old primary's timeline {theirs}: it holds none of timeline {theirs}'s WAL, and how much that was is not recorded"
        ))
    } else {
        None
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Amount {
    fn words(self, n: u64) -> String {
        match self {
            Amount::Transactions => plural(n, "transaction", "transactions"),
            Amount::BinlogBytes => plural(n, "byte of binary log", "bytes of binary log"),
            Amount::BinlogFiles => plural(n, "binary log file", "binary log files"),
            Amount::WalBytes => plural(n, "byte of WAL", "bytes of WAL"),
            Amount::StreamBytes => plural(
                n,
                "byte of the replication stream",
                "bytes of the replication stream",
            ),
        }
    }
}

impl Verdict {
    /// How history rates it: nothing lost is OK; a loss or an unknown one needs a look;
    /// positions of different histories mean the failover was not what it assumed.
    pub fn status(&self) -> crate::model::Status {
        use crate::model::Status;
        match self {
            Verdict::Nothing => Status::Ok,
            Verdict::AtMost { .. } | Verdict::Unknown { .. } => Status::Warning,
            Verdict::Incomparable { .. } => Status::Critical,
        }
    }
}

impl Loss {
    fn describe(&self) -> String {
        let verdict = match &self.verdict {
            Verdict::Nothing => "nothing lost".to_string(),
            Verdict::AtMost { amount, of, gtids } => {
                let which = gtids
                    .as_ref()
                    .map(|g| format!(" (GTIDs {g})"))
                    .unwrap_or_default();
                format!(
                    "at most {} lost{which}{}",
                    of.words(*amount),
                    self.last_seen()
                )
            }
            Verdict::Unknown { why } | Verdict::Incomparable { why } => format!("unknown: {why}"),
        };
        match &self.salvaged {
            Some(s) => format!(
                "{} salvaged from {}'s binlog; {verdict}",
                plural(s.transactions, "transaction", "transactions"),
                s.host
            ),
            None => verdict,
        }
    }

    /// `, last seen 0.8s before the outage`: how long before the outage (else the chain's
    /// start) the old primary's position was read, when it came from a check.
    fn last_seen(&self) -> String {
        let old = &self.old_primary;
        let (OldFrom::LastHealthyCheck, Some(seen)) = (old.from, old.seen_at) else {
            return String::new();
        };
        let (until, what) = match self.outage_at {
            Some(at) => (at, "the outage"),
            None => (self.started_at, "the failover began"),
        };
        let secs = (until - seen).max(0) as f64 / 1000.0;
        format!(
            ", last seen {} before {what}",
            crate::text::human_secs(secs)
        )
    }

    /// The verdict as a clause of the failover's reason: `nothing lost`, `what it lost is
    /// unknown: ...`.
    pub fn clause(&self) -> String {
        match (&self.verdict, &self.salvaged) {
            (Verdict::Unknown { .. } | Verdict::Incomparable { .. }, None) => {
                format!("what it lost is {}", self.words)
            }
            _ => self.words.clone(),
        }
    }

    /// The two positions, one line each, for history's output and the report.
    pub fn details(&self) -> Vec<String> {
        let old = &self.old_primary;
        let new = &self.new_primary;
        let old_line = match (&old.position, old.from) {
            (None, _) => format!("old primary {}: no position recorded", old.address),
            (Some(p), OldFrom::LastHealthyCheck) => format!(
                "old primary {}: {} at its last healthy check{}",
                old.address,
                p.text,
                old.seen_at
                    .map(|at| format!(" ({})", crate::text::format_time(at)))
                    .unwrap_or_default()
            ),
            (Some(p), OldFrom::SalvagedBinlog) => format!(
                "old primary {}: {} at the end of its binary log (salvaged)",
                old.address, p.text
            ),
        };
        let how = if new.how.is_empty() {
            String::new()
        } else {
            format!(" ({})", new.how)
        };
        let new_line = match (&new.position, new.from) {
            (_, NewFrom::NotPromoted) => {
                format!("new primary {}: not made writable{how}", new.address)
            }
            (None, _) => format!("new primary {}: no position recorded{how}", new.address),
            (Some(p), NewFrom::Promotion) => format!(
                "new primary {}: held {} when it was made writable{how}",
                new.address, p.text
            ),
            (Some(p), NewFrom::Decision) => format!(
                "new primary {}: had received {} when the failover was decided{how}",
                new.address, p.text
            ),
        };
        vec![old_line, new_line]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1000;

    fn old(position: Option<Position>) -> OldPrimary {
        OldPrimary {
            address: "10.0.0.11".into(),
            position,
            seen_at: Some(100 * SEC),
            from: OldFrom::LastHealthyCheck,
        }
    }

    fn new(position: Option<Position>) -> NewPrimary {
        NewPrimary {
            address: "10.0.0.12".into(),
            position,
            from: NewFrom::Promotion,
            how: String::new(),
            timeline_before: None,
        }
    }

    fn input(unit: Unit, old: OldPrimary, new: NewPrimary) -> Input {
        Input {
            unit,
            old,
            new,
            salvaged: None,
            outage_at: Some(100 * SEC + 800),
            started_at: 103 * SEC,
        }
    }

    fn binlog(file: &str, offset: u64, gtid: &str) -> Option<Position> {
        Some(Position::binlog(file, offset, gtid))
    }

    fn lsn(text: &str, timeline: Option<u32>) -> Option<Position> {
        Position::lsn(text, timeline)
    }

    /// Every kind of position, each way round: what the words say and how it is rated.
    #[test]
    fn losses_in_words() {
        use Unit::*;
        const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mysql = |n: u64| format!("{UUID}:1-{n}");
        type Row = (Unit, Option<Position>, Option<Position>, &'static str);
        let rows: Vec<Row> = vec![
            (
                Binlog,
                binlog("mysql-bin.000003", 900, "0-1-57"),
                binlog("mysql-bin.000003", 900, "0-1-57"),
                "nothing lost",
            ),
            (
                Binlog,
                binlog("mysql-bin.000003", 900, "0-1-57"),
                binlog("mysql-bin.000003", 400, "0-1-54"),
                "at most 3 transactions lost (GTIDs 0-1-55 to 0-1-57), last seen 0.8s before the outage",
            ),
            (
                Binlog,
                binlog("binlog.000007", 900, &mysql(57)),
                binlog("binlog.000007", 850, &mysql(56)),
                "at most 1 transaction lost (GTIDs 3e11fa47-71ca-11e1-9e33-c80aa9429562:57), last seen 0.8s before the outage",
            ),
            // GTIDs decide over file and offset, which the new primary may not share.
            (
                Binlog,
                binlog("mysql-bin.000003", 900, "0-1-57"),
                binlog("mysql-bin.000001", 4, "0-1-57"),
                "nothing lost",
            ),
            (
                Binlog,
                binlog("mysql-bin.000003", 900, ""),
                binlog("mysql-bin.000003", 400, ""),
                "at most 500 bytes of binary log lost, last seen 0.8s before the outage",
            ),
            (
                Binlog,
                binlog("mysql-bin.000005", 300, ""),
                binlog("mysql-bin.000003", 400, ""),
                "at most 2 binary log files lost, last seen 0.8s before the outage",
            ),
            (
                Binlog,
                binlog("mysql-bin.000003", 400, ""),
                binlog("mysql-bin.000004", 4, ""),
                "nothing lost",
            ),
            (
                Wal,
                lsn("0/3000148", Some(1)),
                lsn("0/3000148", None),
                "nothing lost",
            ),
            (
                Wal,
                lsn("0/3000148", Some(1)),
                lsn("0/3000100", None),
                "at most 72 bytes of WAL lost, last seen 0.8s before the outage",
            ),
            (
                Wal,
                lsn("0/3000148", Some(1)),
                lsn("0/3000147", None),
                "at most 1 byte of WAL lost, last seen 0.8s before the outage",
            ),
            (
                Redis,
                Some(Position::redis(1205)),
                Some(Position::redis(1000)),
                "at most 205 bytes of the replication stream lost, last seen 0.8s before the outage",
            ),
            (
                Redis,
                Some(Position::redis(1205)),
                Some(Position::redis(1300)),
                "nothing lost",
            ),
            (Binlog, None, None, "unknown: no position recorded"),
            (
                Wal,
                None,
                lsn("0/1", None),
                "unknown: no position recorded of the old primary 10.0.0.11",
            ),
            (
                Redis,
                Some(Position::redis(1)),
                None,
                "unknown: no position recorded of the new primary 10.0.0.12",
            ),
        ];
        for (unit, o, n, want) in rows {
            let loss = assess(input(unit, old(o.clone()), new(n.clone())));
            assert_eq!(loss.words, want, "{o:?} against {n:?}");
            let status = match want {
                "nothing lost" => crate::model::Status::Ok,
                _ => crate::model::Status::Warning,
            };
            assert_eq!(loss.verdict.status(), status, "{want}");
        }
    }

    /// PostgreSQL: the promotion starts a new timeline, so only the timeline the new
    /// primary was on before it says whether the two histories are one.
    #[test]
    fn timelines_before_the_promotion() {
        let o = lsn("0/3000148", Some(2));
        let cases: &[(Option<u32>, Option<&str>)] = &[
            (Some(2), None),
            (None, None),
            (
                Some(3),
                Some(
                    "unknown: the new primary was on timeline 3 before its promotion, newer than the old primary's timeline 2: it followed a promotion the old primary did not, so their WAL locations do not compare",
                ),
            ),
            (
                Some(1),
                Some(
                    "unknown: the new primary was on timeline 1, older than the old primary's timeline 2: it holds none of timeline 2's WAL, and how much that was is not recorded",
                ),
            ),
        ];
        for (before, want) in cases {
            let mut n = new(lsn("0/3000100", None));
            n.timeline_before = *before;
            let loss = assess(input(Unit::Wal, old(o.clone()), n));
            match want {
                None => assert_eq!(
                    loss.words,
                    "at most 72 bytes of WAL lost, last seen 0.8s before the outage"
                ),
                Some(w) => {
                    assert_eq!(loss.words, *w);
                    assert_eq!(loss.verdict.status(), crate::model::Status::Critical);
                    assert!(loss.clause().starts_with("what it lost is unknown: "));
                }
            }
        }
    }

    #[test]
    fn where_the_positions_come_from() {
        // A promotion while the old primary answered: no outage, timed from the chain.
        let mut i = input(
            Unit::Wal,
            old(lsn("0/200", Some(1))),
            new(lsn("0/100", None)),
        );
        i.outage_at = None;
        assert_eq!(
            assess(i.clone()).words,
            "at most 256 bytes of WAL lost, last seen 3.0s before the failover began"
        );
        // A salvaged end of the binary log is no sample of a check: no "last seen".
        i.unit = Unit::Binlog;
        i.old = OldPrimary {
            from: OldFrom::SalvagedBinlog,
            ..old(binlog("mysql-bin.000003", 900, "0-1-60"))
        };
        i.new = new(binlog("mysql-bin.000003", 900, "0-1-58"));
        i.salvaged = Some(Salvage {
            host: "db1".into(),
            transactions: 3,
        });
        let loss = assess(i.clone());
        assert_eq!(
            loss.words,
            "3 transactions salvaged from db1's binlog; at most 2 transactions lost (GTIDs 0-1-59 to 0-1-60)"
        );
        assert_eq!(loss.clause(), loss.words);
        i.new = new(binlog("mysql-bin.000003", 900, "0-1-60"));
        assert_eq!(
            assess(i.clone()).words,
            "3 transactions salvaged from db1's binlog; nothing lost"
        );
        assert_eq!(
            assess(i.clone()).details()[0],
            "old primary 10.0.0.11: mysql-bin.000003:900 (GTID 0-1-60) at the end of its binary log (salvaged)"
        );
        // A promotion that did not happen compares nothing.
        i.salvaged = None;
        i.new = NewPrimary {
            from: NewFrom::NotPromoted,
            how: "step `promote` did not make 10.0.0.12 writable".into(),
            ..new(None)
        };
        let loss = assess(i);
        assert_eq!(
            loss.words,
            "unknown: step `promote` did not make 10.0.0.12 writable"
        );
        assert_eq!(
            loss.clause(),
            "what it lost is unknown: step `promote` did not make 10.0.0.12 writable"
        );
        assert_eq!(
            loss.details()[1],
            "new primary 10.0.0.12: not made writable (step `promote` did not make 10.0.0.12 writable)"
        );
    }

    #[test]
    fn details_name_both_positions_and_survive_json() {
        let mut n = new(lsn("0/3000100", None));
        n.how = "pg_last_wal_replay_lsn() after the promotion".into();
        let loss = assess(input(Unit::Wal, old(lsn("0/3000148", Some(1))), n));
        assert_eq!(
            loss.details(),
            [
                "old primary 10.0.0.11: 0/3000148 (timeline 1) at its last healthy check (1970-01-01 00:01:40Z)",
                "new primary 10.0.0.12: held 0/3000100 when it was made writable (pg_last_wal_replay_lsn() after the promotion)",
            ]
        );
        let json = serde_json::to_value(&loss).unwrap();
        assert_eq!(json["verdict"]["kind"], "at_most");
        assert_eq!(json["verdict"]["amount"], 72);
        assert_eq!(json["verdict"]["of"], "wal_bytes");
        assert_eq!(json["unit"], "wal");
        assert_eq!(json["old_primary"]["from"], "last_healthy_check");
        assert_eq!(json["new_primary"]["from"], "promotion");
        let back: Loss = serde_json::from_value(json).unwrap();
        assert_eq!(back, loss);
        let decided = NewPrimary {
            from: NewFrom::Decision,
            ..new(lsn("0/1", None))
        };
        let loss = assess(input(Unit::Wal, old(None), decided));
        assert_eq!(
            loss.details(),
            [
                "old primary 10.0.0.11: no position recorded",
                "new primary 10.0.0.12: had received 0/1 when the failover was decided",
            ]
        );
    }
}
