//! The client of etcd's v3 JSON gateway: keys, leases and transactions, each call tried on
//! the endpoints in order.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use super::http::request;
use super::settings::Settings;

/// A blocking client of etcd's v3 JSON gateway: each call tries the endpoints in order.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<String>,
    tls: Option<crate::tls::Tls>,
    auth: Option<(String, crate::settings::Secret)>,
    /// The token of `auth`, once etcd gave one.
    token: Mutex<Option<String>>,
}

impl Client {
    pub fn new(settings: &Settings) -> Client {
        Client {
            endpoints: settings.endpoints.clone(),
            tls: settings.tls.clone(),
            auth: settings.auth.clone(),
            token: Mutex::default(),
        }
    }

    /// The `Authorization` token, asked of etcd once per command.
    fn token(&self, ep: &str) -> Result<Option<String>> {
        let Some((user, password)) = &self.auth else {
            return Ok(None);
        };
        let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if token.is_none() {
            let body = json!({ "name": user, "password": password.expose() }).to_string();
            let (status, text) = request(
                ep,
                self.tls.as_ref(),
                None,
                "POST",
                "/v3/auth/authenticate",
                &body,
            )?;
            if status != 200 {
                bail!(
                    "etcd refused user `{user}`: HTTP {status}: {}",
                    crate::text::one_line(&crate::text::truncate(&text, 200))
                );
            }
            let v: Value = serde_json::from_str(&text)?;
            *token = v["token"].as_str().map(str::to_string);
        }
        Ok(token.clone())
    }

    /// POSTs `body` to `path`, endpoint after endpoint until one answers 200; the error
    /// names what each endpoint said (refused, timed out, an etcd error such as no quorum).
    pub fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let answer = self.token(ep).and_then(|token| {
                request(
                    ep,
                    self.tls.as_ref(),
                    token.as_deref(),
                    "POST",
                    path,
                    &body.to_string(),
                )
            });
            match answer {
                Ok((200, text)) => {
                    return serde_json::from_str(&text).with_context(|| {
                        format!(
                            "etcd {ep}{path}: not JSON: {}",
                            crate::text::truncate(&text, 200)
                        )
                    });
                }
                Ok((status, text)) => errors.push(format!(
                    "{ep}: HTTP {status}: {}",
                    crate::text::one_line(&crate::text::truncate(&text, 200))
                )),
                Err(e) => errors.push(format!("{ep}: {e:#}")),
            }
        }
        bail!("etcd {path}: {}", errors.join("; "))
    }

    pub fn range(&self, key: &str) -> Result<Option<Kv>> {
        let v = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        v["kvs"].get(0).map(Kv::from_json).transpose()
    }

    /// All keys under `prefix` (`prefix` + anything).
    pub fn range_prefix(&self, prefix: &str) -> Result<Vec<Kv>> {
        let v = self.call(
            "/v3/kv/range",
            &json!({ "key": b64(prefix), "range_end": b64_bytes(&prefix_end(prefix.as_bytes())) }),
        )?;
        v["kvs"]
            .as_array()
            .map(|a| a.iter().map(Kv::from_json).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.call(
            "/v3/kv/put",
            &json!({ "key": b64(key), "value": b64(value) }),
        )?;
        Ok(())
    }

    pub fn grant(&self, ttl: Duration) -> Result<(i64, Duration)> {
        let v = self.call(
            "/v3/lease/grant",
            &json!({ "TTL": ttl.as_secs().to_string() }),
        )?;
        let id = int(&v["ID"]).ok_or_else(|| anyhow!("etcd lease grant: no ID in {v}"))?;
        Ok((
            id,
            Duration::from_secs(int(&v["TTL"]).unwrap_or(0).max(0) as u64),
        ))
    }

    /// Renews a lease; returns the TTL granted (zero: the lease is gone).
    pub fn keepalive(&self, lease: i64) -> Result<Duration> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        // The gateway streams: the answer is {"result": {...}}.
        let r = if v.get("result").is_some() {
            &v["result"]
        } else {
            &v
        };
        if let Some(e) = v.get("error") {
            bail!("etcd lease keepalive: {e}");
        }
        Ok(Duration::from_secs(
            int(&r["TTL"]).unwrap_or(0).max(0) as u64
        ))
    }

    pub fn time_to_live(&self, lease: i64) -> Result<Option<Duration>> {
        let v = self.call("/v3/lease/timetolive", &json!({ "ID": lease.to_string() }))?;
        Ok(int(&v["TTL"])
            .filter(|t| *t >= 0)
            .map(|t| Duration::from_secs(t as u64)))
    }

    pub fn revoke(&self, lease: i64) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))?;
        Ok(())
    }

    pub fn txn(&self, body: &Value) -> Result<(bool, Value)> {
        let v = self.call("/v3/kv/txn", body)?;
        Ok((v["succeeded"].as_bool().unwrap_or(false), v))
    }

    /// etcd's version (`etcdserver` of `/version`).
    pub fn version(&self) -> Result<String> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            match request(ep, self.tls.as_ref(), None, "GET", "/version", "") {
                Ok((200, text)) => {
                    let v: Value = serde_json::from_str(&text)?;
                    return Ok(v["etcdserver"].as_str().unwrap_or("").to_string());
                }
                Ok((status, _)) => errors.push(format!("{ep}: HTTP {status}")),
                Err(e) => errors.push(format!("{ep}: {e:#}")),
            }
        }
        bail!("etcd /version: {}", errors.join("; "))
    }
}

/// A key and its value as etcd returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Kv {
    pub fn from_json(v: &Value) -> Result<Kv> {
        let text = |field: &str| -> Result<String> {
            let s = v[field].as_str().unwrap_or("");
            let bytes = crate::known_hosts::base64_decode(s)
                .ok_or_else(|| anyhow!("etcd: `{field}` is not base64"))?;
            String::from_utf8(bytes).map_err(|_| anyhow!("etcd: `{field}` is not UTF-8"))
        };
        Ok(Kv {
            key: text("key")?,
            value: text("value")?,
            create_revision: int(&v["create_revision"]).unwrap_or(0),
            mod_revision: int(&v["mod_revision"]).unwrap_or(0),
            lease: int(&v["lease"]).unwrap_or(0),
        })
    }
}

/// The gateway writes 64-bit integers as strings.
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

pub fn b64(s: &str) -> String {
    crate::ssh::base64(s.as_bytes())
}

/// The gateway's keys and values are base64.
pub fn b64_bytes(b: &[u8]) -> String {
    crate::ssh::base64(b)
}

/// The end of a prefix range: the prefix with its last byte incremented.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }
}
