//! One blocking HTTP/1.1 request to an etcd endpoint (plain or TLS), bounded by a connect
//! and an I/O timeout, and the parser of its answer.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

/// Longest a connection to one etcd endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Longest one request may wait for its answer (a write without quorum hangs until then).
const IO_TIMEOUT: Duration = Duration::from_millis(2500);
/// Largest answer read from etcd.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// One HTTP/1.1 request with `Connection: close` (over TLS with `tls`), bounded by the
/// connect and I/O timeouts.
pub fn request(
    ep: &str,
    tls: Option<&crate::tls::Tls>,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let addr = ep
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {ep}"))?
        .next()
        .ok_or_else(|| anyhow!("{ep} resolves to no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .with_context(|| format!("cannot connect to {ep}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let host = ep.rsplit_once(':').map_or(ep, |(h, _)| h);
            Box::new(tls.handshake(host, tcp).map_err(|e| match e {
                crate::tls::Failed::Silent(m) | crate::tls::Failed::Refused(m) => {
                    anyhow!("{ep}: TLS: {m}")
                }
            })?)
        }
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {ep}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() >= deadline {
            bail!("{ep}: no complete answer within {:?}", IO_TIMEOUT);
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE {
                    bail!("{ep}: answer larger than {MAX_RESPONSE} bytes");
                }
                if let Some(done) = parse_response(&raw)? {
                    return Ok(done);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow!(e).context(format!("{ep}: no answer"))),
        }
    }
    parse_response(&raw)?.ok_or_else(|| anyhow!("{ep}: the connection closed mid-answer"))
}

/// A plain or TLS connection.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A complete HTTP response's status and body, or None while it is incomplete. Knows
/// `Content-Length` and `chunked` (the gateway streams `keepalive` answers); with neither,
/// the body ends with the connection (`Ok(None)` until then).
pub fn parse_response(raw: &[u8]) -> Result<Option<(u16, String)>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        // The first complete chunk is enough: a streamed keepalive answers one message.
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .map_err(|_| anyhow!("bad chunk size"))?;
            if size == 0 {
                return Ok(Some((status, String::from_utf8_lossy(&out).into_owned())));
            }
            if rest.len() < eol + 2 + size + 2 {
                return Ok(None);
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
            let text = String::from_utf8_lossy(&out);
            if serde_json::from_str::<Value>(text.trim()).is_ok() {
                return Ok(Some((status, text.into_owned())));
            }
        }
    }
    match length {
        Some(n) if body.len() >= n => Ok(Some((
            status,
            String::from_utf8_lossy(&body[..n]).into_owned(),
        ))),
        Some(_) => Ok(None),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Len").unwrap(),
            None
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(),
            Some((200, "{}".to_string()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}").unwrap(),
            None
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            Some((200, "{\"a\":1}".to_string()))
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
