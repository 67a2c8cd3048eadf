//! TLS toward the database servers (MySQL/MariaDB, PostgreSQL and Redis), through the system's OpenSSL
//! (the `native-tls` and `openssl` crates; deadpool links OpenSSL for SSH already): a pool's
//! `tls` table loaded and checked, the handshake for the Redis and PostgreSQL clients, the options for the
//! MySQL client, and a failed handshake said in plain words, sorted by what it says about
//! the server: a certificate that cannot be trusted, or an alert, came from a live server;
//! silence or a closed connection did not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use native_tls::{Certificate, Identity, TlsConnector, TlsStream};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Signed by a trusted CA and naming the server (the default).
    Full,
    /// Signed by a trusted CA, whatever name it carries.
    Ca,
    /// Not checked at all: encrypted, but any server (or anyone in between) is believed.
    None,
}

impl Verify {
    pub fn parse(s: &str) -> Result<Verify, String> {
        match s {
            "full" => Ok(Verify::Full),
            "ca" => Ok(Verify::Ca),
            "none" => Ok(Verify::None),
            other => Err(format!(
                "got \"{other}\", expected \"full\" (CA and name), \"ca\" (CA only) or \"none\""
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verify::Full => "full",
            Verify::Ca => "ca",
            Verify::None => "none",
        }
    }
}

use crate::error::Problem;
use crate::settings::TlsSettings as Settings;

/// A checked `tls` table: the CA certificates parsed, the client certificate and key
/// matched and held in memory (never written to disk).
#[derive(Clone)]
pub struct Tls {
    /// CA certificates (PEM) trusted besides the system's; `None`: the system's only.
    pub ca_file: Option<PathBuf>,
    pub verify: Verify,
    /// The client certificate (PEM, leaf first), for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// The name the certificates must carry, when it is not the host as configured.
    pub server_name: Option<String>,
    roots: Vec<Certificate>,
    /// The client certificate and its key as a PKCS#12 archive with an empty password.
    identity: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .field("verify", &self.verify)
            .field("cert_file", &self.cert_file)
            .field("server_name", &self.server_name)
            .field("identity", &self.identity.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Tls {
    /// Checks and loads a `tls` table. Errors name the key within the table (`ca_file`,
    /// ...; the caller nests it: `tls.ca_file`) and say what to do.
    pub fn load(s: Settings) -> Result<Tls, Problem> {
        let verify = match &s.verify {
            Some(v) => Verify::parse(v).map_err(|e| Problem::at("verify", e))?,
            None => Verify::Full,
        };
        let roots = match &s.ca_file {
            Some(path) => {
                let certs = read_certificates(path).map_err(|e| Problem::at("ca_file", e))?;
                certs
                    .iter()
                    .map(|c| {
                        c.to_der()
                            .ok()
                            .and_then(|der| Certificate::from_der(&der).ok())
                            .ok_or_else(|| {
                                Problem::at(
                                    "ca_file",
                                    format!(
                                        "{}: a certificate in it cannot be used",
                                        path.display()
                                    ),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => Vec::new(),
        };
        let identity = match (&s.cert_file, &s.key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(Problem::at(
                    "key_file",
                    "a client certificate (`cert_file`) needs its key: set `key_file` too",
                ));
            }
            (None, Some(_)) => {
                return Err(Problem::at(
                    "cert_file",
                    "a client key (`key_file`) needs its certificate: set `cert_file` too",
                ));
            }
            (Some(cert), Some(key)) => Some(Arc::new(client_identity(cert, key)?)),
        };
        if let Some(name) = &s.server_name {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
            if !ok {
                return Err(Problem::at(
                    "server_name",
                    format!("`{name}` is not a host name or IP address"),
                ));
            }
            if verify != Verify::Full {
                return Err(Problem::at(
                    "server_name",
                    format!(
                        "with verify = \"{}\" no name is checked; remove server_name or use verify = \"full\"",
                        verify.as_str()
                    ),
                ));
            }
        }
        Ok(Tls {
            ca_file: s.ca_file,
            verify,
            cert_file: s.cert_file,
            server_name: s.server_name,
            roots,
            identity,
        })
    }

    /// The name the server's certificate must carry.
    pub fn name_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        let mut out = format!("TLS, verify {}", self.verify.as_str());
        match &self.ca_file {
            Some(ca) => out.push_str(&format!(" against {}", ca.display())),
            None if self.verify != Verify::None => out.push_str(" against the system's CAs"),
            None => {}
        }
        if let Some(name) = &self.server_name {
            out.push_str(&format!(", certificates must name {name}"));
        }
        if let Some(cert) = &self.cert_file {
            out.push_str(&format!(", client certificate {}", cert.display()));
        }
        out
    }

    fn connector(&self) -> Result<TlsConnector, String> {
        let mut b = TlsConnector::builder();
        for root in &self.roots {
            b.add_root_certificate(root.clone());
        }
        if let Some(der) = &self.identity {
            let identity = Identity::from_pkcs12(der, "")
                .map_err(|e| format!("TLS: the client certificate cannot be used: {e}"))?;
            b.identity(identity);
        }
        b.danger_accept_invalid_hostnames(self.verify != Verify::Full);
        b.danger_accept_invalid_certs(self.verify == Verify::None);
        b.build()
            .map_err(|e| format!("TLS: cannot set up OpenSSL: {e}"))
    }

    /// The TLS handshake on a connected stream, bounded by the stream's read and write
    /// timeouts (a timed-out read ends it).
    pub fn handshake(&self, host: &str, stream: TcpStream) -> Result<TlsStream<TcpStream>, Failed> {
        let connector = self.connector().map_err(Failed::Refused)?;
        let name = self.name_for(host);
        connector.connect(name, stream).map_err(|e| match e {
            native_tls::HandshakeError::WouldBlock(_) => Failed::Silent(TIMED_OUT.into()),
            native_tls::HandshakeError::Failure(e) => explain(&e.to_string(), self, name),
        })
    }

    /// The MySQL client's options, and the in-memory file its client certificate is read
    /// from (keep it until the connection stands).
    pub fn mysql_opts(&self) -> Result<(mysql::SslOpts, Option<MemFile>), String> {
        let mut opts = mysql::SslOpts::default()
            .with_danger_skip_domain_validation(self.verify != Verify::Full)
            .with_danger_accept_invalid_certs(self.verify == Verify::None);
        if let Some(ca) = &self.ca_file {
            opts = opts.with_root_cert_path(Some(ca.clone()));
        }
        let mut file = None;
        if let Some(der) = &self.identity {
            // The MySQL client reads its client certificate from a PKCS#12 file: a file in
            // memory only this process can open, gone when it is closed.
            let mem = MemFile::new(der)
                .map_err(|e| format!("TLS: cannot hand the client certificate over: {e}"))?;
            opts = opts.with_client_identity(Some(mysql::ClientIdentity::new(mem.path())));
            file = Some(mem);
        }
        Ok((opts, file))
    }
}

/// What a database client talks over: TCP, or TLS on TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

const TIMED_OUT: &str = "no answer in time during the TLS handshake (timed out)";

/// Reads the PEM certificates of a file: trusted by root, at least one certificate.
fn read_certificates(path: &Path) -> Result<Vec<openssl::x509::X509>, String> {
    let pem = match crate::strict::read_config(path) {
        Ok(Some(pem)) => pem,
        Ok(None) => return Err(format!("{} does not exist", path.display())),
        // Whoever may write a CA file decides whom deadpool trusts.
        Err(e) => return Err(e.to_string()),
    };
    let certs = openssl::x509::X509::stack_from_pem(&pem)
        .map_err(|_| format!("{}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The client certificate and its key, checked to belong together, as a PKCS#12 archive.
fn client_identity(cert: &Path, key: &Path) -> Result<Vec<u8>, Problem> {
    let mut chain = read_certificates(cert)
        .map_err(|e| Problem::at("cert_file", e))?
        .into_iter();
    let leaf = chain.next().expect("at least one certificate");
    let pem = crate::strict::read_secret(key).map_err(|e| Problem::at("key_file", e))?;
    let pkey = openssl::pkey::PKey::private_key_from_pem(&pem).map_err(|_| {
        Problem::at(
            "key_file",
            format!(
                "{}: not a PEM private key (an encrypted key cannot be used)",
                key.display()
            ),
        )
    })?;
    let mut builder = openssl::pkcs12::Pkcs12::builder();
    builder.name("deadpool").pkey(&pkey).cert(&leaf);
    let mut stack = openssl::stack::Stack::new().map_err(|e| Problem::at("cert_file", e))?;
    for c in chain {
        stack.push(c).map_err(|e| Problem::at("cert_file", e))?;
    }
    builder.ca(stack);
    let archive = builder.build2("").map_err(|_| {
        Problem::at(
            "key_file",
            format!(
                "{} is not the key of the certificate in {}",
                key.display(),
                cert.display()
            ),
        )
    })?;
    archive.to_der().map_err(|e| Problem::at("cert_file", e))
}

/// Why a handshake failed, sorted by what it says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// No answer in time, or the connection closed: nothing says the server is alive.
    Silent(String),
    /// The server answered (a certificate deadpool does not trust, an alert, bytes that
    /// are not TLS): it is alive, and a person must fix the setup.
    Refused(String),
}

/// A failed handshake's text (OpenSSL's, through native-tls) in plain words, with what to
/// do (pure, for tests).
pub fn explain(text: &str, tls: &Tls, name: &str) -> Failed {
    let lower = text.to_ascii_lowercase();
    let reason = last_parenthesis(text).unwrap_or_default();
    let ca = match &tls.ca_file {
        Some(path) => format!("the CA in ca_file {}", path.display()),
        None => "any CA this system trusts (set ca_file)".to_string(),
    };
    if lower.contains("handshake process was interrupted")
        || lower.contains("timed out")
        || lower.contains("os error 11)")
        || lower.contains("would block")
    {
        return Failed::Silent(TIMED_OUT.into());
    }
    if lower.contains("certificate verify failed") {
        let r = reason.to_ascii_lowercase();
        let message = if r.contains("mismatch") {
            format!(
                "TLS: the server's certificate does not name {name} ({reason}): set tls.server_name to the name it carries, or write the server by that name"
            )
        } else if r.contains("expired") || r.contains("not yet valid") {
            format!("TLS: the server's certificate is out of its validity period ({reason})")
        } else if r.contains("issuer")
            || r.contains("self-signed")
            || r.contains("self signed")
            || r.contains("first certificate")
            || r.contains("signature")
        {
            format!(
                "TLS: the server's certificate is not signed by {ca} ({reason}): put the CA that signed it in ca_file"
            )
        } else {
            format!("TLS: the server's certificate is refused ({reason})")
        };
        return Failed::Refused(message);
    }
    if let Some(alert) = alert(text) {
        let hint = if [
            "certificate required",
            "bad certificate",
            "unknown ca",
            "certificate unknown",
        ]
        .iter()
        .any(|a| alert.contains(a))
        {
            ": it wants a client certificate it trusts (tls.cert_file and tls.key_file)"
        } else {
            ""
        };
        return Failed::Refused(format!(
            "TLS: the server refused the handshake ({alert}){hint}"
        ));
    }
    if [
        "wrong version number",
        "packet length too long",
        "record layer failure",
        "unknown protocol",
        "http request",
    ]
    .iter()
    .any(|m| lower.contains(m))
    {
        return Failed::Refused(
            "TLS: the server answered, but not with TLS: is TLS enabled on this port (Redis: tls-port)?".into(),
        );
    }
    if lower.contains("error:") && !lower.contains("unexpected eof") {
        // An OpenSSL error stack means bytes came from the server and were read.
        return Failed::Refused(format!(
            "TLS handshake failed: {}",
            crate::text::truncate(&crate::text::one_line(text), 160)
        ));
    }
    Failed::Silent(format!(
        "the connection ended during the TLS handshake ({})",
        crate::text::truncate(&crate::text::one_line(text), 80)
    ))
}

/// The alert in an OpenSSL error text: `...:tlsv13 alert certificate required:...`.
fn alert(text: &str) -> Option<String> {
    text.split(':')
        .map(str::trim)
        .find(|part| part.contains(" alert ") && !part.starts_with("SSL alert number"))
        .map(|part| {
            part.split_once(" alert ")
                .map_or(part, |(_, what)| what)
                .to_string()
        })
        .map(|what| format!("alert: {what}"))
}

/// `... (unable to get local issuer certificate)` -> the text in the last parentheses.
fn last_parenthesis(text: &str) -> Option<String> {
    let end = text.rfind(')')?;
    let start = text[..end].rfind('(')?;
    Some(text[start + 1..end].to_string())
}

/// Whether a server that dropped a plain-text client speaks TLS: a TLS record it cannot
/// accept draws an alert from an OpenSSL server, while a plain-text server stays silent or
/// answers in its own protocol. One connection, bounded by `timeout`.
pub fn speaks_tls(addr: &SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(NOT_A_HELLO).is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    is_alert(&answer[..got])
}

/// A handshake record holding five bytes that are no handshake message.
pub const NOT_A_HELLO: &[u8] = b"\x16\x03\x01\x00\x05hello";

/// A TLS alert record (content type 21, version 3.x), pure for tests.
fn is_alert(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && bytes[0] == 0x15 && bytes[1] == 0x03
}

/// A file in memory (`memfd_create`), opened by path through `/proc/self/fd`: for a
/// library that reads a secret from a path, without the secret touching a disk. Closed
/// (and gone) when dropped; not inherited by child processes.
#[derive(Debug)]
pub struct MemFile {
    file: std::fs::File,
}

impl MemFile {
    pub fn new(bytes: &[u8]) -> std::io::Result<MemFile> {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create(2) takes a NUL-terminated name and flags, and returns a new
        // descriptor that nothing else owns, or -1.
        let fd = unsafe { libc::memfd_create(c"deadpool-tls".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(bytes)?;
        Ok(MemFile { file })
    }

    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: Option<&str>) -> Tls {
        Tls {
            ca_file: ca.map(PathBuf::from),
            verify: Verify::Full,
            cert_file: None,
            server_name: None,
            roots: Vec::new(),
            identity: None,
        }
    }

    /// Recorded from OpenSSL 3.0 (native-tls) against MariaDB 10.11 and Redis 7.0.
    #[test]
    fn handshake_failures_read_plainly() {
        let t = tls(Some("/etc/deadpool/tls/ca.pem"));
        let refused = |text: &str| match explain(text, &t, "10.0.0.11") {
            Failed::Refused(m) => m,
            other => panic!("{text}: {other:?}"),
        };
        let silent = |text: &str| match explain(text, &t, "10.0.0.11") {
            Failed::Silent(m) => m,
            other => panic!("{text}: {other:?}"),
        };
        let m = refused(
            "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (unable to get local issuer certificate)",
        );
        assert_eq!(
            m,
            "TLS: the server's certificate is not signed by the CA in ca_file /etc/deadpool/tls/ca.pem (unable to get local issuer certificate): put the CA that signed it in ca_file"
        );
        let m = refused(
            "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (IP address mismatch)",
        );
        assert!(
            m.contains("does not name 10.0.0.11 (IP address mismatch)"),
            "{m}"
        );
        let m = refused(
            "error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../ssl/record/rec_layer_s3.c:1584:SSL alert number 116",
        );
        assert_eq!(
            m,
            "TLS: the server refused the handshake (alert: certificate required): it wants a client certificate it trusts (tls.cert_file and tls.key_file)"
        );
        let m = refused(
            "error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../ssl/record/ssl3_record.c:354:",
        );
        assert!(m.contains("not with TLS"), "{m}");
        assert_eq!(silent("the handshake process was interrupted"), TIMED_OUT);
        assert!(silent("unexpected EOF").contains("ended during the TLS handshake"));
        assert!(
            silent("Connection reset by peer (os error 104)").contains("ended during"),
            "a reset says nothing of a live server"
        );
        let system = tls(None);
        match explain(
            "certificate verify failed: (self-signed certificate in certificate chain)",
            &system,
            "db1",
        ) {
            Failed::Refused(m) => assert!(m.contains("any CA this system trusts"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alerts_are_told_from_silence() {
        assert!(is_alert(b"\x15\x03\x03\x00\x02\x02\x0a"));
        assert!(!is_alert(b"-ERR unknown command\r\n"));
        assert!(!is_alert(b""));
        assert!(!is_alert(b"\x15\x03"));
    }

    #[test]
    fn verify_values() {
        assert_eq!(Verify::parse("full"), Ok(Verify::Full));
        assert_eq!(Verify::parse("ca"), Ok(Verify::Ca));
        assert_eq!(Verify::parse("none"), Ok(Verify::None));
        assert!(
            Verify::parse("yes")
                .unwrap_err()
                .contains("expected \"full\"")
        );
    }

    #[test]
    fn memory_files_read_back_by_path() {
        let f = MemFile::new(b"secret bytes").unwrap();
        assert_eq!(std::fs::read(f.path()).unwrap(), b"secret bytes");
        let path = f.path();
        drop(f);
        assert!(std::fs::read(path).map_or(true, |b| b != b"secret bytes"));
    }
}
