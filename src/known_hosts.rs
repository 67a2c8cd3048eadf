//! OpenSSH `known_hosts` files, read the way OpenSSH reads them: host patterns with
//! wildcards and negation, `[host]:port` names for ports other than 22, hashed names
//! (`|1|salt|hash`), and the `@revoked` and `@cert-authority` markers. A revoked key is
//! refused even where another line accepts it; a CA line never accepts a plain host key.
//! Pure: the caller reads the file and hands over the server's key.

/// What a line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Plain,
    Revoked,
    CertAuthority,
}

/// One usable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub marker: Marker,
    hosts: String,
    pub key_type: String,
    pub key: Vec<u8>,
}

/// The verdict on a server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// A `@revoked` line names this key.
    Revoked,
    /// The host is known, with other keys (of these types).
    Changed(Vec<String>),
    /// Only `@cert-authority` lines name the host: host certificates are not supported.
    CertificateOnly,
    NotFound,
}

/// Parses a known_hosts file; lines that cannot be read are skipped, as OpenSSH does.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let (marker, hosts) = match first {
            "@revoked" => (Marker::Revoked, words.next()),
            "@cert-authority" => (Marker::CertAuthority, words.next()),
            m if m.starts_with('@') => continue,
            hosts => (Marker::Plain, Some(hosts)),
        };
        let (Some(hosts), Some(key_type), Some(key)) = (hosts, words.next(), words.next()) else {
            continue;
        };
        let Some(key) = base64_decode(key) else {
            continue;
        };
        out.push(Entry {
            marker,
            hosts: hosts.to_string(),
            key_type: key_type.to_string(),
            key,
        });
    }
    out
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` elsewhere.
fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

impl Entry {
    /// Whether this line's host field names `host` on `port`.
    pub fn names(&self, host: &str, port: u16) -> bool {
        let name = lookup_name(host, port);
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            let Some((salt, hash)) = hashed.split_once('|') else {
                return false;
            };
            let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
                return false;
            };
            return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
        }
        let mut matched = false;
        for pattern in self.hosts.split(',') {
            let (negated, pattern) = match pattern.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, pattern),
            };
            if wildcard(&pattern.to_ascii_lowercase(), &name) {
                if negated {
                    return false;
                }
                matched = true;
            }
        }
        matched
    }
}

/// `*` and `?` glob matching, as in OpenSSH host patterns.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Checks the server's key (`key_type`, wire-format `key`) for `host` on `port`.
pub fn check(entries: &[Entry], host: &str, port: u16, key: &[u8]) -> Verdict {
    let named: Vec<&Entry> = entries.iter().filter(|e| e.names(host, port)).collect();
    if named
        .iter()
        .any(|e| e.marker == Marker::Revoked && e.key == key)
    {
        return Verdict::Revoked;
    }
    let plain: Vec<&&Entry> = named.iter().filter(|e| e.marker == Marker::Plain).collect();
    if plain.iter().any(|e| e.key == key) {
        return Verdict::Match;
    }
    if !plain.is_empty() {
        let mut types: Vec<String> = plain.iter().map(|e| e.key_type.clone()).collect();
        types.dedup();
        return Verdict::Changed(types);
    }
    if named.iter().any(|e| e.marker == Marker::CertAuthority) {
        return Verdict::CertificateOnly;
    }
    Verdict::NotFound
}

/// The host key algorithms to offer in the handshake: those `known_hosts` holds for the
/// host first (so a server with several keys shows the one we know), then the rest.
pub fn algorithm_preference(entries: &[Entry], host: &str, port: u16) -> String {
    const ALL: &[&str] = &[
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
    ];
    let mut known: Vec<&str> = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.marker == Marker::Plain && e.names(host, port))
    {
        let algorithms: &[&str] = match e.key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            t => ALL
                .iter()
                .find(|a| **a == t)
                .map_or(&[][..], std::slice::from_ref),
        };
        for a in algorithms {
            if !known.contains(a) {
                known.push(a);
            }
        }
    }
    let rest: Vec<&str> = ALL.iter().filter(|a| !known.contains(a)).copied().collect();
    known.extend(rest);
    known.join(",")
}

/// Standard base64 (padding optional); `None` on anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// SHA-1 (FIPS 180-4), for OpenSSH's hashed host names only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104).
fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(data.iter().copied())
        .collect();
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(sha1(&inner).iter().copied())
        .collect();
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_and_hmac_match_the_standards() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // RFC 2202, test case 2.
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert!(base64_decode("Zm9v!").is_none());
    }

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn key(b64: &str) -> Vec<u8> {
        base64_decode(b64).unwrap()
    }

    #[test]
    fn verdicts_table() {
        // A hashed line for `[db1]:2222`, made with a fixed salt.
        let salt = [7u8; 20];
        let hashed = format!(
            "|1|{}|{}",
            crate::ssh::base64(&salt),
            crate::ssh::base64(&hmac_sha1(&salt, b"[db1]:2222"))
        );
        let file = format!(
            "# comment\n\
             db1,10.0.0.1 ssh-ed25519 {KEY_A}\n\
             [db2]:2222 ssh-ed25519 {KEY_A}\n\
             {hashed} ssh-ed25519 {KEY_B}\n\
             *.example,!bad.example ssh-ed25519 {KEY_A}\n\
             @revoked * ssh-ed25519 {KEY_B}\n\
             @cert-authority *.ca.test ssh-ed25519 {KEY_A}\n\
             garbage line\n"
        );
        let entries = parse(&file);
        assert_eq!(entries.len(), 6);
        // (host, port, key, verdict)
        let rows: Vec<(&str, u16, &str, Verdict)> = vec![
            ("db1", 22, KEY_A, Verdict::Match),
            ("DB1", 22, KEY_A, Verdict::Match),
            ("10.0.0.1", 22, KEY_A, Verdict::Match),
            ("db1", 22, KEY_B, Verdict::Revoked),
            ("db2", 2222, KEY_A, Verdict::Match),
            ("db2", 22, KEY_A, Verdict::NotFound),
            ("db1", 2222, KEY_B, Verdict::Revoked),
            ("x.example", 22, KEY_A, Verdict::Match),
            ("bad.example", 22, KEY_A, Verdict::NotFound),
            ("h.ca.test", 22, KEY_A, Verdict::CertificateOnly),
            ("other", 22, KEY_A, Verdict::NotFound),
        ];
        for (host, port, k, verdict) in rows {
            assert_eq!(
                check(&entries, host, port, &key(k)),
                verdict,
                "{host}:{port}"
            );
        }
        let changed = parse(&format!("db1 ssh-rsa {KEY_A}\n"));
        assert_eq!(
            check(&changed, "db1", 22, &key(KEY_B)),
            Verdict::Changed(vec!["ssh-rsa".into()])
        );
        // The hashed entry names db1 on 2222 only.
        let only_hashed = parse(&format!("{hashed} ssh-ed25519 {KEY_B}\n"));
        assert_eq!(
            check(&only_hashed, "db1", 2222, &key(KEY_B)),
            Verdict::Match
        );
        assert_eq!(
            check(&only_hashed, "db1", 22, &key(KEY_B)),
            Verdict::NotFound
        );
    }

    #[test]
    fn known_key_types_come_first() {
        let entries = parse(&format!("db1 ssh-rsa {KEY_A}\nother ssh-ed25519 {KEY_A}\n"));
        let prefs = algorithm_preference(&entries, "db1", 22);
        assert!(
            prefs.starts_with("rsa-sha2-512,rsa-sha2-256,ssh-rsa,ssh-ed25519"),
            "{prefs}"
        );
        assert!(algorithm_preference(&entries, "none", 22).starts_with("ssh-ed25519"));
        assert!(wildcard("db*", "db12") && wildcard("d?1", "db1") && !wildcard("db?", "db12"));
    }
}
