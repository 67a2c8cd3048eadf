//! How far a server's copy of the primary's stream goes: the primary's own position and each
//! standby's received and applied positions, in the primary's coordinates, so that they
//! compare (MySQL/MariaDB binary log file and offset, with the GTID position where there is
//! one; Redis replication offset; PostgreSQL WAL location and timeline). Plain data with its
//! order and its words; no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One position in a primary's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The binary log file's number (`mysql-bin.000042` is 42); 0 for Redis and PostgreSQL.
    pub file: u64,
    /// The offset in that file (MySQL/MariaDB), in the replication stream (Redis), or the
    /// WAL location as one number (PostgreSQL's `16/B374D848` is `0x16_B374D848`).
    pub offset: u64,
    /// How many transactions the GTID position holds, where it is known (MariaDB: the sum of
    /// the sequence numbers of its domains), so a difference reads as transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<u64>,
    /// The GTID position itself, as the server gives it (MariaDB `0-1-57`, MySQL
    /// `uuid:1-57`), where there is one: which transactions a difference holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// The PostgreSQL timeline the location was written on, where it is known. WAL
    /// locations keep counting across a promotion; the timeline tells a server that
    /// followed a promotion from one that did not, whose further locations are of another
    /// history ([`Position::has`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// As the server says it: `mysql-bin.000042:1234 (GTID 0-1-57)`, `offset 12345`,
    /// `0/3000148 (timeline 2)`.
    pub text: String,
}

/// What kind of stream a position belongs to, for the words of a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Binlog,
    Redis,
    Wal,
}

impl Position {
    /// A MySQL/MariaDB position: a binary log file name and offset, and the GTID position
    /// when there is one (empty: none).
    pub fn binlog(file_name: &str, offset: u64, gtid: &str) -> Position {
        let gtid = gtid.trim();
        let text = if gtid.is_empty() {
            format!("{file_name}:{offset}")
        } else {
            format!("{file_name}:{offset} (GTID {gtid})")
        };
        Position {
            file: binlog_number(file_name),
            offset,
            transactions: transactions_in(gtid),
            gtid: (!gtid.is_empty()).then(|| gtid.to_string()),
            timeline: None,
            text,
        }
    }

    /// A Redis replication offset.
    pub fn redis(offset: u64) -> Position {
        Position {
            file: 0,
            offset,
            transactions: None,
            gtid: None,
            timeline: None,
            text: format!("offset {offset}"),
        }
    }

    /// A PostgreSQL WAL location as the server writes it (`16/B374D848`: two hexadecimal
    /// halves of a 64-bit number), on `timeline` when it is known. `None` for text that is
    /// no location.
    pub fn lsn(text: &str, timeline: Option<u32>) -> Option<Position> {
        let (high, low) = text.trim().split_once('/')?;
        let ok =
            |h: &str| !h.is_empty() && h.len() <= 8 && h.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(high) || !ok(low) {
            return None;
        }
        let high = u64::from_str_radix(high, 16).ok()?;
        let low = u64::from_str_radix(low, 16).ok()?;
        let offset = (high << 32) | low;
        let location = format!("{high:X}/{low:X}");
        Some(Position {
            file: 0,
            offset,
            transactions: None,
            gtid: None,
            timeline,
            text: match timeline {
                Some(t) => format!("{location} (timeline {t})"),
                None => location,
            },
        })
    }

    fn key(&self) -> (u64, u64) {
        (self.file, self.offset)
    }

    /// Whether this position holds everything up to `other` (of the same primary). One on
    /// an older timeline than `other` never does: past the point where the newer timeline
    /// began, its WAL is another history, whatever the locations say.
    pub fn has(&self, other: &Position) -> bool {
        self.older_timeline(other).is_none() && self.key() >= other.key()
    }

    /// Its timeline and `other`'s, when both are known and this one is the older.
    pub fn older_timeline(&self, other: &Position) -> Option<(u32, u32)> {
        match (self.timeline, other.timeline) {
            (Some(mine), Some(theirs)) if mine < theirs => Some((mine, theirs)),
            _ => None,
        }
    }

    /// How far this position is behind `ahead`, in words ("50 transactions", "1234 bytes",
    /// "2 binary log files"); `None` when it is not behind.
    pub fn behind(&self, ahead: &Position, unit: Unit) -> Option<String> {
        if self.has(ahead) {
            return None;
        }
        // Further along, but on an older timeline: the locations say nothing of the gap.
        if let Some((mine, theirs)) = self.older_timeline(ahead)
            && self.key() >= ahead.key()
        {
            let n = theirs - mine;
            return Some(format!("{n} timeline{}", if n == 1 { "" } else { "s" }));
        }
        if let (Some(a), Some(b)) = (ahead.transactions, self.transactions)
            && a > b
        {
            let n = a - b;
            return Some(format!("{n} transaction{}", if n == 1 { "" } else { "s" }));
        }
        Some(match unit {
            Unit::Redis => format!("{} bytes", ahead.offset.saturating_sub(self.offset)),
            Unit::Wal => format!("{} bytes of WAL", ahead.offset.saturating_sub(self.offset)),
            Unit::Binlog if ahead.file == self.file => {
                format!("{} bytes of binary log", ahead.offset - self.offset)
            }
            Unit::Binlog => format!("{} binary log files", ahead.file - self.file),
        })
    }
}

/// The number at the end of a binary log file's name (`mysql-bin.000042` is 42); 0 when
/// the name ends in none.
pub fn binlog_number(name: &str) -> u64 {
    name.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// How many transactions a GTID position holds: for MariaDB's `domain-server-seq` list, the
/// sum of the sequence numbers; for MySQL's `uuid:1-57:60` sets, the number of transactions
/// in the intervals. `None` when empty or not understood.
pub fn transactions_in(gtid: &str) -> Option<u64> {
    let gtid = gtid.trim();
    if gtid.is_empty() {
        return None;
    }
    let mut total = 0u64;
    for part in gtid.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((_, intervals)) = part.split_once(':') {
            for interval in intervals.split(':') {
                let (a, b) = match interval.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
                    None => {
                        let a = interval.parse::<u64>().ok()?;
                        (a, a)
                    }
                };
                total += b.checked_sub(a)? + 1;
            }
        } else {
            let seq = part.rsplit('-').next()?.parse::<u64>().ok()?;
            if part.split('-').count() != 3 {
                return None;
            }
            total += seq;
        }
    }
    Some(total)
}

/// The transactions of the GTID position `ahead` that `behind` lacks: how many, and which
/// (MariaDB: `0-1-51 to 0-1-57` per domain; MySQL: `uuid:51-57` per source). `None` when
/// either is empty, not understood, or the two are of different kinds.
pub fn missing_gtids(ahead: &str, behind: &str) -> Option<(u64, String)> {
    let (ahead, behind) = (ahead.trim(), behind.trim());
    if ahead.is_empty() || behind.is_empty() {
        return None;
    }
    match (ahead.contains(':'), behind.contains(':')) {
        (false, false) => missing_by_domain(ahead, behind),
        (true, true) => missing_by_source(ahead, behind),
        _ => None,
    }
}

/// MariaDB's `domain-server-seq` list: per domain, its last GTID.
fn domains(gtid: &str) -> Option<BTreeMap<u64, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for part in gtid.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let numbers: Vec<u64> = part
            .split('-')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        let [domain, server, seq] = numbers[..] else {
            return None;
        };
        out.insert(domain, (server, seq));
    }
    Some(out)
}

fn missing_by_domain(ahead: &str, behind: &str) -> Option<(u64, String)> {
    let (ahead, behind) = (domains(ahead)?, domains(behind)?);
    let mut count = 0;
    let mut which = Vec::new();
    for (domain, (server, seq)) in &ahead {
        let had = behind.get(domain).map_or(0, |(_, s)| *s);
        if *seq > had {
            count += seq - had;
            which.push(if seq - had == 1 {
                format!("{domain}-{server}-{seq}")
            } else {
                format!("{domain}-{server}-{} to {domain}-{server}-{seq}", had + 1)
            });
        }
    }
    Some((count, which.join(", ")))
}

/// MySQL's `uuid:1-5:7` sets: per source, its intervals of transaction numbers.
fn sources(gtid: &str) -> Option<BTreeMap<String, Vec<(u64, u64)>>> {
    let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for part in gtid.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (uuid, intervals) = part.split_once(':')?;
        let list = out.entry(uuid.trim().to_ascii_lowercase()).or_default();
        for interval in intervals.split(':') {
            let (a, b) = match interval.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let a = interval.parse().ok()?;
                    (a, a)
                }
            };
            if b < a {
                return None;
            }
            list.push((a, b));
        }
    }
    Some(out)
}

/// The intervals of `ahead` that none of `behind` covers.
fn subtract(ahead: &[(u64, u64)], behind: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut behind = behind.to_vec();
    behind.sort_unstable();
    let mut out = Vec::new();
    for &(a, b) in ahead {
        // The first number of this interval not yet known to be covered or not.
        let mut start = a;
        let mut covered_to_end = false;
        for &(c, d) in &behind {
            if d < start {
                continue;
            }
            if c > b {
                break;
            }
            if c > start {
                out.push((start, c - 1));
            }
            if d >= b {
                covered_to_end = true;
                break;
            }
            start = d + 1;
        }
        if !covered_to_end {
            out.push((start, b));
        }
    }
    out
}

fn missing_by_source(ahead: &str, behind: &str) -> Option<(u64, String)> {
    let (ahead, behind) = (sources(ahead)?, sources(behind)?);
    let mut count = 0;
    let mut which = Vec::new();
    for (uuid, intervals) in &ahead {
        let gone = subtract(intervals, behind.get(uuid).map_or(&[][..], Vec::as_slice));
        if gone.is_empty() {
            continue;
        }
        count += gone.iter().map(|(a, b)| b - a + 1).sum::<u64>();
        let parts: Vec<String> = (gone.iter())
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        which.push(format!("{uuid}:{}", parts.join(":")));
    }
    Some((count, which.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_and_say_how_far_behind() {
        let primary = Position::binlog("mysql-bin.000003", 900, "0-1-57");
        let standby = Position::binlog("mysql-bin.000003", 400, "0-1-7");
        assert!(primary.has(&standby) && !standby.has(&primary));
        assert!(primary.has(&primary));
        assert_eq!(
            standby.behind(&primary, Unit::Binlog).as_deref(),
            Some("50 transactions")
        );
        assert_eq!(primary.behind(&standby, Unit::Binlog), None);
        let older_file = Position::binlog("mysql-bin.000001", 5000, "");
        assert!(standby.has(&older_file));
        assert_eq!(
            older_file.behind(&standby, Unit::Binlog).as_deref(),
            Some("2 binary log files")
        );
        let same_file = Position::binlog("mysql-bin.000003", 100, "");
        assert_eq!(
            same_file.behind(&standby, Unit::Binlog).as_deref(),
            Some("300 bytes of binary log")
        );
        assert_eq!(
            Position::redis(10)
                .behind(&Position::redis(1034), Unit::Redis)
                .as_deref(),
            Some("1024 bytes")
        );
        assert_eq!(primary.text, "mysql-bin.000003:900 (GTID 0-1-57)");
    }

    /// PostgreSQL locations as `pg_current_wal_lsn()` and `pg_last_wal_replay_lsn()` give
    /// them: ordered as numbers (not as text: `0/A` is after `0/9000000`), across timelines.
    #[test]
    fn wal_locations_order_and_say_how_far_behind() {
        // (text, timeline, (offset, text kept))
        type Row<'a> = (&'a str, Option<u32>, Option<(u64, &'a str)>);
        let rows: &[Row] = &[
            (
                "0/3000148",
                Some(1),
                Some((0x300_0148, "0/3000148 (timeline 1)")),
            ),
            ("16/B374D848", None, Some((0x16_B374_D848, "16/B374D848"))),
            ("0/a", None, Some((10, "0/A"))),
            (
                "FFFFFFFF/FFFFFFFF",
                Some(7),
                Some((u64::MAX, "FFFFFFFF/FFFFFFFF (timeline 7)")),
            ),
            (" 0/0 ", None, Some((0, "0/0"))),
            ("", None, None),
            ("0/", None, None),
            ("/5", None, None),
            ("1/2/3", None, None),
            ("0/G", None, None),
            ("100000000/0", None, None),
            ("+1/0", None, None),
        ];
        for (text, timeline, want) in rows {
            let got = Position::lsn(text, *timeline).map(|p| (p.offset, p.text.clone()));
            assert_eq!(got, want.map(|(o, t)| (o, t.to_string())), "{text}");
        }
        let primary = Position::lsn("1/0", Some(2)).unwrap();
        let standby = Position::lsn("0/FFFFFF00", Some(1)).unwrap();
        assert!(primary.has(&standby) && !standby.has(&primary));
        assert_eq!(
            standby.behind(&primary, Unit::Wal).as_deref(),
            Some("256 bytes of WAL")
        );
        assert_eq!(primary.behind(&standby, Unit::Wal), None);
        // Further on an older timeline: forked off, it holds none of the newer one.
        let forked = Position::lsn("2/0", Some(1)).unwrap();
        assert!(!forked.has(&primary) && primary.has(&standby));
        assert_eq!(forked.older_timeline(&primary), Some((1, 2)));
        assert_eq!(
            forked.behind(&primary, Unit::Wal).as_deref(),
            Some("1 timeline")
        );
        let unknown = Position::lsn("2/0", None).unwrap();
        assert!(unknown.has(&primary), "no timeline: the locations decide");
        assert_eq!(unknown.older_timeline(&primary), None);
        let json = serde_json::to_string(&primary).unwrap();
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), primary);
        assert!(
            !serde_json::to_string(&Position::redis(1))
                .unwrap()
                .contains("timeline")
        );
    }

    #[test]
    fn gtid_positions_count_their_transactions() {
        let rows: &[(&str, Option<u64>)] = &[
            ("0-1-57", Some(57)),
            ("0-1-57,1-2-3", Some(60)),
            ("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", Some(5)),
            ("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7:9-10", Some(8)),
            ("", None),
            ("junk", None),
            ("0-1", None),
        ];
        for (gtid, want) in rows {
            assert_eq!(transactions_in(gtid), *want, "{gtid}");
        }
        assert_eq!(binlog_number("mysql-bin.000042"), 42);
        assert_eq!(binlog_number("nodots"), 0);
    }

    #[test]
    fn missing_gtids_say_how_many_and_which() {
        const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        type Row<'a> = (&'a str, &'a str, Option<(u64, &'a str)>);
        let rows: &[Row] = &[
            ("0-1-57", "0-1-50", Some((7, "0-1-51 to 0-1-57"))),
            ("0-1-57", "0-1-56", Some((1, "0-1-57"))),
            ("0-1-57", "0-1-57", Some((0, ""))),
            ("0-1-57", "0-1-60", Some((0, ""))),
            ("0-1-57,1-2-3", "0-1-57", Some((3, "1-2-1 to 1-2-3"))),
            ("0-1-5", "0-2-3,1-1-9", Some((2, "0-1-4 to 0-1-5"))),
            (
                "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-57",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-50",
                Some((7, "3e11fa47-71ca-11e1-9e33-c80aa9429562:51-57")),
            ),
            (
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10:20-30",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-4:6-25",
                Some((6, "3e11fa47-71ca-11e1-9e33-c80aa9429562:5:26-30")),
            ),
            (
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3,ffffffff-0000-0000-0000-000000000000:1-9",
                Some((0, "")),
            ),
            ("0-1-5", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3", None),
            ("", "0-1-5", None),
            ("0-1", "0-1-5", None),
            ("x:1-b", "x:1", None),
            ("x:5-1", "x:1", None),
        ];
        for (ahead, behind, want) in rows {
            let got = missing_gtids(ahead, behind);
            let want = want.map(|(n, t)| (n, t.to_string()));
            assert_eq!(got, want, "{ahead} against {behind}");
        }
        let whole = format!("{A}:1-100");
        let holes = format!("{A}:2-99");
        assert_eq!(
            missing_gtids(&whole, &holes),
            Some((2, format!("{A}:1:100")))
        );
        assert_eq!(
            missing_gtids(&format!("{A}:1-5"), &format!("{A}:1-{}", u64::MAX)),
            Some((0, String::new()))
        );
    }
}
