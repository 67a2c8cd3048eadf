//! A small blocking PostgreSQL client (frontend/backend protocol v3 over TCP, or over TLS
//! after an SSLRequest, with a pool's `tls` table): the login (trust, SCRAM-SHA-256, md5,
//! and a clear-text password only over TLS) and simple queries whose rows come back as
//! text, every read and write bounded by the timeout. The monitor asks a few read-only
//! questions; the `postgres` crate would bring an async runtime (tokio) for them.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use openssl::hash::MessageDigest;

use crate::net::io_words;
use crate::settings::Secret;
use crate::tls::{Stream, Tls};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: Option<&'a Secret>,
    pub database: &'a str,
    /// Bounds the connect and each read and write.
    pub timeout: Duration,
    /// TLS after an SSLRequest, when the pool has a `tls` table.
    pub tls: Option<&'a Tls>,
}

/// Why a call failed, sorted by what it says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing (sensible) answered: refused, unreachable, timed out, closed, not PostgreSQL.
    Down(String),
    /// The server answered with an error: it is alive.
    Server(ServerError),
    /// The server answered, but deadpool does not go on: a certificate it does not trust,
    /// a password asked for in clear text without TLS, a login method it does not speak.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Down(m) | Failure::Refused(m) => f.write_str(m),
            Failure::Server(e) => write!(f, "{e}"),
        }
    }
}

/// An ErrorResponse: its severity, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerError {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

impl ServerError {
    /// The fields of an ErrorResponse body: a type byte and a C string each, then a zero.
    /// `V` (PostgreSQL 9.6+) is the severity that translations leave alone.
    pub fn parse(body: &[u8]) -> ServerError {
        let mut e = ServerError::default();
        let mut localized = String::new();
        for field in body.split(|b| *b == 0) {
            let Some((kind, text)) = field.split_first() else {
                continue;
            };
            let text = String::from_utf8_lossy(text).into_owned();
            match kind {
                b'V' => e.severity = text,
                b'S' => localized = text,
                b'C' => e.code = text,
                b'M' => e.message = text,
                _ => {}
            }
        }
        if e.severity.is_empty() {
            e.severity = localized;
        }
        e
    }
}

/// Longest message accepted from the server; a peer that sends more is not the server.
const MAX_MESSAGE: usize = 1024 * 1024;
/// Protocol version 3.0.
const PROTOCOL: i32 = 196_608;
/// The SSLRequest code: 1234 in the high half, 5679 in the low.
const SSL_REQUEST: i32 = 80_877_103;

/// Rows of a simple query, every value as text (`None`: SQL NULL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The value of `column` in the first row; `None` for no row, no such column, or NULL.
    pub fn first(&self, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.first()?.get(i)?.as_deref()
    }
}

#[derive(Debug)]
pub struct Client {
    stream: BufReader<Stream>,
    /// `server_version` as the server reported it at login (`15.10 (Debian ...)`).
    pub version: String,
    /// Whether the session runs over TLS.
    pub tls: bool,
}

impl Client {
    /// Connects and logs in; the client is ready for queries.
    pub fn connect(t: &Target) -> Result<Client, Failure> {
        let (stream, tls) = open(t)?;
        let mut client = Client {
            stream: BufReader::new(stream),
            version: String::new(),
            tls,
        };
        client.send(None, &startup(t.user, t.database))?;
        client.authenticate(t)?;
        client.await_ready()?;
        Ok(client)
    }

    /// Runs one simple query. An error the server reports is [`Failure::Server`], read to
    /// the end of the exchange so the session stays usable.
    pub fn query(&mut self, sql: &str) -> Result<Rows, Failure> {
        self.send(Some(b'Q'), &cstring(sql))?;
        let mut rows = Rows::default();
        let mut error = None;
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'T' => rows.columns = columns(&body).map_err(not_postgres)?,
                b'D' => rows.rows.push(data_row(&body).map_err(not_postgres)?),
                b'C' | b'I' => {}
                b'E' => error = Some(ServerError::parse(&body)),
                b'Z' => break,
                other => return Err(unexpected(other)),
            }
        }
        match error {
            Some(e) => Err(Failure::Server(e)),
            None => Ok(rows),
        }
    }

    /// Answers the server's authentication requests until it accepts the login.
    fn authenticate(&mut self, t: &Target) -> Result<(), Failure> {
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'R' => {}
                b'E' => return Err(Failure::Server(ServerError::parse(&body))),
                other => return Err(unexpected(other)),
            }
            let mut r = Body::new(&body);
            let method = r.i32().map_err(not_postgres)?;
            match method {
                0 => return Ok(()),
                3 if !self.tls => {
                    return Err(Failure::Refused(
                        "the server asks for the password in clear text and there is no TLS: use scram-sha-256 in pg_hba.conf, or give the monitor a `tls` table".into(),
                    ));
                }
                3 => {
                    let password = needed(t)?;
                    self.send(Some(b'p'), &cstring(password.expose()))?;
                }
                5 => {
                    let salt = r.take(4).map_err(not_postgres)?;
                    let password = needed(t)?;
                    let answer = md5_answer(t.user, password.expose(), salt);
                    self.send(Some(b'p'), &cstring(&answer))?;
                }
                10 => self.scram(t, &body[4..])?,
                other => {
                    return Err(Failure::Refused(format!(
                        "the server asks for a login method deadpool does not speak (authentication request {other}): use scram-sha-256 in pg_hba.conf"
                    )));
                }
            }
        }
    }

    /// SCRAM-SHA-256 without channel binding (RFC 5802, RFC 7677). PostgreSQL takes the
    /// user from the startup message, so the SCRAM user name is empty.
    fn scram(&mut self, t: &Target, mechanisms: &[u8]) -> Result<(), Failure> {
        let offered = mechanisms.split(|b| *b == 0).any(|m| m == b"SCRAM-SHA-256");
        if !offered {
            return Err(Failure::Refused(format!(
                "the server offers no SASL mechanism deadpool speaks ({})",
                String::from_utf8_lossy(mechanisms)
                    .replace('\0', " ")
                    .trim()
            )));
        }
        let password = needed(t)?;
        let scram = Scram::new("", &nonce());
        let first = scram.client_first();
        let mut initial = cstring("SCRAM-SHA-256");
        initial.extend_from_slice(&(first.len() as i32).to_be_bytes());
        initial.extend_from_slice(first.as_bytes());
        self.send(Some(b'p'), &initial)?;
        let server_first = self.sasl_step(11)?;
        let (client_final, signature) = scram
            .client_final(password.expose(), &server_first)
            .map_err(Failure::Refused)?;
        self.send(Some(b'p'), client_final.as_bytes())?;
        let server_final = self.sasl_step(12)?;
        verify_server_final(&server_final, &signature).map_err(Failure::Refused)
    }

    /// The data of the next SASL message, which must be of `method` (11 continue, 12 final).
    fn sasl_step(&mut self, method: i32) -> Result<String, Failure> {
        let (kind, body) = self.receive()?;
        match kind {
            b'R' => {}
            b'E' => return Err(Failure::Server(ServerError::parse(&body))),
            other => return Err(unexpected(other)),
        }
        let mut r = Body::new(&body);
        let got = r.i32().map_err(not_postgres)?;
        if got != method {
            return Err(not_postgres(format!(
                "SCRAM: expected authentication request {method}, got {got}"
            )));
        }
        Ok(String::from_utf8_lossy(r.rest()).into_owned())
    }

    /// After the login: the server's parameters and key data, up to ReadyForQuery.
    fn await_ready(&mut self) -> Result<(), Failure> {
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'K' => {}
                b'Z' => return Ok(()),
                b'E' => return Err(Failure::Server(ServerError::parse(&body))),
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Writes one message: its type byte (none for the startup message), length, body.
    fn send(&mut self, kind: Option<u8>, body: &[u8]) -> Result<(), Failure> {
        let mut out = Vec::with_capacity(body.len() + 5);
        out.extend(kind);
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
        let stream = self.stream.get_mut();
        stream
            .write_all(&out)
            .and_then(|()| stream.flush())
            .map_err(|e| Failure::Down(io_words(&e)))
    }

    /// Reads the next message, passing over what the server may send at any time
    /// (notices, notifications, parameter changes: `server_version` is kept).
    fn receive(&mut self) -> Result<(u8, Vec<u8>), Failure> {
        loop {
            let (kind, body) = read_message(&mut self.stream)?;
            match kind {
                b'N' | b'A' => {}
                b'S' => {
                    let mut r = Body::new(&body);
                    if let (Ok(name), Ok(value)) = (r.cstr(), r.cstr())
                        && name == "server_version"
                    {
                        self.version = value;
                    }
                }
                _ => return Ok((kind, body)),
            }
        }
    }
}

impl Drop for Client {
    /// A Terminate message, so the server logs no "unexpected EOF"; best effort.
    fn drop(&mut self) {
        let _ = self.stream.get_mut().write_all(b"X\0\0\0\x04");
    }
}

/// The TCP connection with its timeouts, and TLS on it when the target has a `tls` table.
fn open(t: &Target) -> Result<(Stream, bool), Failure> {
    let down = |what: String| Failure::Down(format!("{}:{}: {what}", t.host, t.port));
    let addrs = crate::net::resolve(t.host, t.port, t.timeout).map_err(Failure::Down)?;
    let addr = addrs.first().ok_or_else(|| down("no address".into()))?;
    let stream = TcpStream::connect_timeout(addr, t.timeout).map_err(|e| down(io_words(&e)))?;
    stream
        .set_read_timeout(Some(t.timeout))
        .and_then(|()| stream.set_write_timeout(Some(t.timeout)))
        .map_err(|e| down(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = t.tls else {
        return Ok((Stream::Plain(stream), false));
    };
    let mut stream = stream;
    let answer = ssl_answer(&mut stream).map_err(down)?;
    match answer {
        b'S' => {}
        b'N' => {
            return Err(Failure::Refused(format!(
                "{}:{}: the server does not take TLS (ssl = off): turn ssl on, or remove the monitor's `tls` table",
                t.host, t.port
            )));
        }
        other => {
            return Err(down(format!(
                "not a PostgreSQL answer to SSLRequest (byte {other:#04x})"
            )));
        }
    }
    // The answer was read straight from the socket, one byte: nothing the server sent
    // before the handshake can be taken for part of the TLS session.
    match tls.handshake(t.host, stream) {
        Ok(s) => Ok((Stream::Tls(Box::new(s)), true)),
        Err(crate::tls::Failed::Refused(m)) => Err(Failure::Refused(m)),
        Err(crate::tls::Failed::Silent(m)) => Err(down(m)),
    }
}

/// Sends an SSLRequest and reads the one byte of the answer: `S` (TLS follows) or `N`.
fn ssl_answer(stream: &mut TcpStream) -> Result<u8, String> {
    let mut request = 8i32.to_be_bytes().to_vec();
    request.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    stream.write_all(&request).map_err(|e| io_words(&e))?;
    let mut answer = [0u8; 1];
    match stream.read(&mut answer) {
        Ok(0) => Err("connection closed before answering the SSLRequest".into()),
        Ok(_) => Ok(answer[0]),
        Err(e) => Err(io_words(&e)),
    }
}

/// The startup message's body: the protocol version, then name and value pairs.
fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = PROTOCOL.to_be_bytes().to_vec();
    for (name, value) in [
        ("user", user),
        ("database", database),
        ("application_name", "deadpool"),
    ] {
        body.extend(cstring(name));
        body.extend(cstring(value));
    }
    body.push(0);
    body
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The password the server asks for; its absence is a setup to fix, not a dead server.
fn needed<'a>(t: &Target<'a>) -> Result<&'a Secret, Failure> {
    t.password.ok_or_else(|| {
        Failure::Refused(format!(
            "the server asks for {}'s password: set the monitor's password_file",
            t.user
        ))
    })
}

/// Reads one backend message: its type byte and its body. Lengths are bounded.
pub fn read_message(r: &mut impl Read) -> Result<(u8, Vec<u8>), Failure> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(closed_or_io)?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (4..=MAX_MESSAGE).contains(l))
        .ok_or_else(|| not_postgres(format!("message length {len}")))?;
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body).map_err(closed_or_io)?;
    Ok((head[0], body))
}

fn closed_or_io(e: std::io::Error) -> Failure {
    Failure::Down(match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "connection closed".into(),
        _ => io_words(&e),
    })
}

fn not_postgres(why: String) -> Failure {
    Failure::Down(format!("not a PostgreSQL answer ({why})"))
}

fn unexpected(kind: u8) -> Failure {
    not_postgres(format!("unexpected message {:?}", char::from(kind)))
}

/// A RowDescription's column names.
fn columns(body: &[u8]) -> Result<Vec<String>, String> {
    let mut r = Body::new(body);
    let n = r.i16()?;
    (0..n)
        .map(|_| {
            let name = r.cstr()?;
            // Table OID, column number, type OID, type size, type modifier, format code.
            r.take(18)?;
            Ok(name)
        })
        .collect()
}

/// A DataRow's values as text.
fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, String> {
    let mut r = Body::new(body);
    let n = r.i16()?;
    (0..n)
        .map(|_| {
            let len = r.i32()?;
            if len < 0 {
                return Ok(None);
            }
            let bytes = r.take(len as usize)?;
            Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
        })
        .collect()
}

/// A reader over a message body that refuses to read past its end.
struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn new(bytes: &'a [u8]) -> Body<'a> {
        Body { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err("message shorter than its fields".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Result<String, String> {
        let end = (self.bytes.iter().position(|b| *b == 0))
            .ok_or_else(|| "string without its end".to_string())?;
        let s = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(s)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// md5 authentication: `md5` and the hex MD5 of (the hex MD5 of password and user) and
/// the salt.
fn md5_answer(user: &str, password: &str, salt: &[u8]) -> String {
    let inner = hex(&digest(
        MessageDigest::md5(),
        &[password.as_bytes(), user.as_bytes()],
    ));
    let outer = hex(&digest(MessageDigest::md5(), &[inner.as_bytes(), salt]));
    format!("md5{outer}")
}

fn digest(kind: MessageDigest, parts: &[&[u8]]) -> Vec<u8> {
    let mut h = openssl::hash::Hasher::new(kind).expect("OpenSSL digest");
    for p in parts {
        h.update(p).expect("OpenSSL digest");
    }
    h.finish().expect("OpenSSL digest").to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client nonce: 18 random bytes in base64 (no `,`, as SCRAM needs).
fn nonce() -> String {
    let mut bytes = [0u8; 18];
    openssl::rand::rand_bytes(&mut bytes).expect("OpenSSL random bytes");
    openssl::base64::encode_block(&bytes)
}

/// One SCRAM-SHA-256 exchange from the client's side, pure so the RFC's example checks it.
#[derive(Debug)]
struct Scram {
    /// `n=user,r=nonce`.
    first_bare: String,
    nonce: String,
}

impl Scram {
    fn new(user: &str, nonce: &str) -> Scram {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_string(),
        }
    }

    /// The client-first message: no channel binding (`n,,`).
    fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// The client-final message for the server-first one, and the server signature the
    /// server-final message must carry. The password is used as given: SASLprep changes
    /// only passwords outside ASCII.
    fn client_final(
        &self,
        password: &str,
        server_first: &str,
    ) -> Result<(String, Vec<u8>), String> {
        let field = |key: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(key))
                .ok_or_else(|| format!("SCRAM: the server's first message has no `{key}`"))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("SCRAM: the server's nonce does not extend ours".into());
        }
        let salt = openssl::base64::decode_block(field("s=")?)
            .map_err(|_| "SCRAM: the salt is not base64".to_string())?;
        let iterations: usize = (field("i=")?.parse().ok())
            .filter(|i| (1..=10_000_000).contains(i))
            .ok_or_else(|| "SCRAM: the iteration count is not a number".to_string())?;
        let mut salted = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            password.as_bytes(),
            &salt,
            iterations,
            MessageDigest::sha256(),
            &mut salted,
        )
        .map_err(|e| format!("SCRAM: {e}"))?;
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = digest(MessageDigest::sha256(), &[&client_key]);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth.as_bytes());
        let message = format!(
            "{without_proof},p={}",
            openssl::base64::encode_block(&proof)
        );
        Ok((message, server_signature))
    }
}

/// Checks the server-final message: the server knew the password too (`v=`), or says why
/// not (`e=`).
fn verify_server_final(server_final: &str, expected: &[u8]) -> Result<(), String> {
    if let Some(e) = server_final.strip_prefix("e=") {
        return Err(format!("SCRAM: the server refused: {e}"));
    }
    let signature = server_final
        .split(',')
        .find_map(|f| f.strip_prefix("v="))
        .and_then(|v| openssl::base64::decode_block(v).ok());
    match signature {
        // Compared in constant time (`memcmp::eq` needs equal lengths).
        Some(s) if s.len() == expected.len() && openssl::memcmp::eq(&s, expected) => Ok(()),
        _ => Err("SCRAM: the server's signature is wrong: it does not know the password (is this the server?)".into()),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = openssl::pkey::PKey::hmac(key).expect("OpenSSL HMAC key");
    let mut signer =
        openssl::sign::Signer::new(MessageDigest::sha256(), &key).expect("OpenSSL HMAC");
    signer.update(data).expect("OpenSSL HMAC");
    signer.sign_to_vec().expect("OpenSSL HMAC")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend message as the server writes it.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The example exchange of RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let scram = Scram::new("user", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (client_final, signature) = scram.client_final("pencil", server_first).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(verify_server_final(server_final, &signature), Ok(()));
        let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert!(
            verify_server_final(forged, &signature)
                .unwrap_err()
                .contains("wrong")
        );
        assert!(verify_server_final("v=AAAA", &signature).is_err());
        assert_eq!(
            verify_server_final("e=invalid-proof", &signature),
            Err("SCRAM: the server refused: invalid-proof".into())
        );
    }

    #[test]
    fn scram_refuses_a_bad_server_first_message() {
        let scram = Scram::new("", "abc");
        let rows: &[(&str, &str)] = &[
            ("r=xyz1,s=AAAA,i=4096", "does not extend ours"),
            ("r=abc,s=AAAA,i=4096", "does not extend ours"),
            ("r=abcdef,s=!!!,i=4096", "not base64"),
            ("r=abcdef,s=AAAA,i=many", "iteration count"),
            ("r=abcdef,s=AAAA,i=0", "iteration count"),
            ("r=abcdef,i=4096", "no `s=`"),
        ];
        for (server_first, words) in rows {
            let e = scram.client_final("pw", server_first).unwrap_err();
            assert!(e.contains(words), "{server_first}: {e}");
        }
        assert_eq!(Scram::new("a=b,c", "n").first_bare, "n=a=3Db=2Cc,r=n");
    }

    /// md5 as PostgreSQL computes it (`md5` || md5(md5(password || user) || salt)).
    #[test]
    fn md5_answer_is_postgres_md5() {
        assert_eq!(
            md5_answer("deadpool", "secret", &[1, 2, 3, 4]),
            "md5e3e3ea0752a78657969912d13259f716"
        );
    }

    /// Recorded from PostgreSQL 15: a failed login, with its `V` field.
    #[test]
    fn error_responses_give_severity_code_and_message() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"deadpool\"\0Fauth.c\0L330\0Rauth_failed\0\0";
        let e = ServerError::parse(body);
        assert_eq!(
            e.to_string(),
            "FATAL 28P01: password authentication failed for user \"deadpool\""
        );
        // Before 9.6 only the translated severity.
        let e = ServerError::parse(b"SFATAL\0C53300\0Msorry, too many clients already\0\0");
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "53300"));
        assert_eq!(ServerError::parse(b""), ServerError::default());
    }

    #[test]
    fn rows_read_as_text() {
        let mut desc = 2i16.to_be_bytes().to_vec();
        for name in ["lsn", "tli"] {
            desc.extend(cstring(name));
            desc.extend_from_slice(&[0u8; 18]);
        }
        let columns = columns(&desc).unwrap();
        assert_eq!(columns, ["lsn", "tli"]);
        let mut row = 2i16.to_be_bytes().to_vec();
        row.extend_from_slice(&9i32.to_be_bytes());
        row.extend_from_slice(b"0/3000148");
        row.extend_from_slice(&(-1i32).to_be_bytes());
        let values = data_row(&row).unwrap();
        assert_eq!(values, [Some("0/3000148".to_string()), None]);
        let rows = Rows {
            columns,
            rows: vec![values],
        };
        assert_eq!(rows.first("lsn"), Some("0/3000148"));
        assert_eq!((rows.first("tli"), rows.first("nope")), (None, None));
        assert!(data_row(&row[..row.len() - 6]).is_err());
        assert!(columns_of_nothing());
    }

    fn columns_of_nothing() -> bool {
        columns(&[0, 3, b'a']).is_err() && columns(&[]).is_err()
    }

    #[test]
    fn messages_are_bounded() {
        let read = |bytes: Vec<u8>| read_message(&mut std::io::Cursor::new(bytes));
        assert_eq!(read(message(b'Z', b"I")), Ok((b'Z', b"I".to_vec())));
        let huge = [b'D', 0x7f, 0, 0, 0].to_vec();
        assert!(matches!(read(huge), Err(Failure::Down(m)) if m.contains("not a PostgreSQL")));
        let short = [b'D', 0, 0, 0, 3].to_vec();
        assert!(read(short).is_err());
        assert_eq!(read(b"HTTP/".to_vec()).map(|m| m.0).ok(), None);
        assert_eq!(
            read(Vec::new()),
            Err(Failure::Down("connection closed".into()))
        );
    }

    #[test]
    fn startup_names_user_and_database() {
        let body = startup("deadpool", "postgres");
        assert_eq!(&body[..4], &PROTOCOL.to_be_bytes());
        assert_eq!(
            &body[4..],
            b"user\0deadpool\0database\0postgres\0application_name\0deadpool\0\0"
        );
        assert_eq!(SSL_REQUEST.to_be_bytes(), [0x04, 0xd2, 0x16, 0x2f]);
    }

    /// A server on a local port that answers the startup with `script`, after reading what
    /// the client sends first; it records what it read.
    fn fake_server(script: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = Vec::new();
            for answer in script {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                seen.extend_from_slice(&buf[..n]);
                if !answer.is_empty() {
                    s.write_all(&answer).unwrap();
                }
            }
            seen
        });
        (port, handle)
    }

    fn target<'a>(port: u16, password: Option<&'a Secret>) -> Target<'a> {
        Target {
            host: "127.0.0.1",
            port,
            user: "deadpool",
            password,
            database: "postgres",
            timeout: Duration::from_millis(500),
            tls: None,
        }
    }

    /// An md5 login and one query against a scripted server, then a clear-text request
    /// without TLS, which is refused before the password leaves.
    #[test]
    fn logs_in_with_md5_and_queries() {
        let ready = [
            message(b'S', b"server_version\x0015.10 (Debian 15.10-0+deb12u1)\0"),
            message(b'K', &[0; 8]),
            message(b'Z', b"I"),
        ]
        .concat();
        let mut desc = 1i16.to_be_bytes().to_vec();
        desc.extend(cstring("pg_is_in_recovery"));
        desc.extend_from_slice(&[0u8; 18]);
        let mut row = 1i16.to_be_bytes().to_vec();
        row.extend_from_slice(&1i32.to_be_bytes());
        row.push(b'f');
        let answer = [
            message(b'T', &desc),
            message(b'D', &row),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat();
        let (port, server) = fake_server(vec![
            message(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]),
            [message(b'R', &[0; 4]), ready].concat(),
            answer,
            Vec::new(),
        ]);
        let secret = Secret::new("secret".into());
        let mut client = Client::connect(&target(port, Some(&secret))).unwrap();
        assert_eq!(client.version, "15.10 (Debian 15.10-0+deb12u1)");
        let rows = client.query("SELECT pg_is_in_recovery()").unwrap();
        assert_eq!(rows.first("pg_is_in_recovery"), Some("f"));
        drop(client);
        let seen = server.join().unwrap();
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains("md5e3e3ea0752a78657969912d13259f716"),
            "{text}"
        );
        assert!(text.contains("SELECT pg_is_in_recovery()"), "{text}");
        assert!(seen.ends_with(b"X\0\0\0\x04"), "{text}");

        let (port, server) = fake_server(vec![message(b'R', &[0, 0, 0, 3]), Vec::new()]);
        let e = Client::connect(&target(port, Some(&secret))).unwrap_err();
        assert!(
            matches!(&e, Failure::Refused(m) if m.contains("clear text")),
            "{e}"
        );
        assert!(!String::from_utf8_lossy(&server.join().unwrap()).contains("secret"));
    }

    /// A server that accepts the connection and never answers is down once the read
    /// timeout passes; a login error is the server's.
    #[test]
    fn silence_is_down_and_errors_are_the_servers() {
        let (port, server) = fake_server(vec![Vec::new(), Vec::new()]);
        let started = std::time::Instant::now();
        let e = Client::connect(&target(port, None)).unwrap_err();
        assert!(
            matches!(&e, Failure::Down(m) if m.contains("timed out")),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(server);
        let error = message(
            b'E',
            b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0",
        );
        let (port, server) = fake_server(vec![error]);
        let e = Client::connect(&target(port, None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "FATAL 57P03: the database system is starting up"
        );
        assert!(matches!(e, Failure::Server(_)));
        server.join().unwrap();
    }
}
