//! TLS trust (`ca_file`): a CA and a server certificate made here, an HTTPS server on
//! loopback that answers `check`'s two requests, and the built binary trusting that server
//! only when `ca_file` names the CA. Needs no fakes, so it runs in the lean build too.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::*;

/// The most connections the test server accepts before it stops (the failing case retries
/// each request a few times; nothing else connects).
const MAX_CONNECTIONS: usize = 64;

/// A CA (its PEM) and a certificate it signed for `localhost` and `127.0.0.1`, with that
/// certificate's key.
struct TestPki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn make_pki() -> TestPki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ciosync test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

    let server_key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server certificate");
    TestPki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![server_cert.der().clone()],
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
    }
}

/// An HTTPS server on loopback answering GIS's `currentPerson` (any path with `graphql`)
/// and customer.io's region check; anything else is a 404. One request per connection.
fn https_server(pki: &TestPki) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .expect("server TLS config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming().take(MAX_CONNECTIONS) {
            let Ok(stream) = stream else { continue };
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let connection = rustls::ServerConnection::new(config).expect("TLS connection");
                // A client that refuses the certificate ends the handshake: nothing to answer.
                let _ = answer(rustls::StreamOwned::new(connection, stream));
            });
        }
    });
    addr
}

fn answer<S: std::io::Read + std::io::Write>(stream: S) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, json) = if path.contains("graphql") {
        ("200 OK", r#"{"data":{"currentPerson":{"id":"4242"}}}"#)
    } else if path == "/api/v1/accounts/region" {
        (
            "200 OK",
            r#"{"region":"us","url":"https://track.customer.io"}"#,
        )
    } else {
        ("404 Not Found", r#"{"meta":{"error":"not found"}}"#)
    };
    let stream = reader.get_mut();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{json}",
        json.len()
    )?;
    stream.flush()
}

/// A config pointing both services at `https://localhost:<port>`, with `ca_file` when given.
fn write_config(dir: &Path, addr: SocketAddr, ca_file: Option<&Path>) -> std::path::PathBuf {
    let ca_line = ca_file.map_or_else(String::new, |path| {
        format!("ca_file = \"{}\"\n", path.display())
    });
    let text = format!(
        r#"data_dir = "{data}"
{ca_line}
[gis]
endpoint = "https://localhost:{port}/graphql"
home_lcs = [1337]
access_token = "test-token"
request_timeout = "2s"

[customerio]
site_id = "test-site"
api_key = "test-key"
track_url = "https://localhost:{port}"
request_timeout = "2s"
"#,
        data = dir.join("data").display(),
        port = addr.port(),
    );
    let path = dir.join(if ca_file.is_some() {
        "with-ca.toml"
    } else {
        "without-ca.toml"
    });
    write_private(&path, &text);
    path
}

#[test]
fn a_server_signed_by_a_private_ca_is_trusted_only_with_ca_file() {
    let pki = make_pki();
    let addr = https_server(&pki);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("test-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write the CA");

    let trusted = write_config(dir.path(), addr, Some(&ca));
    let out = ciosync(
        &["check", "--config", trusted.to_str().expect("utf-8")],
        &[],
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "stdout: {text}\nstderr: {}", stderr(&out));
    assert!(text.contains("gis: ok (current person 4242)"), "{text}");
    assert!(text.contains("customerio: ok (region us"), "{text}");

    // The same server without ca_file: neither the built-in nor the system roots know the CA.
    let untrusted = write_config(dir.path(), addr, None);
    let out = ciosync(
        &["check", "--config", untrusted.to_str().expect("utf-8")],
        &[],
    );
    let text = stdout(&out);
    assert_ne!(code(&out), 0, "an unknown CA must not be trusted: {text}");
    assert!(
        text.contains("gis: FAILED") && text.contains("customerio: FAILED"),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("certificate"),
        "the failure says the certificate is the problem: {text}"
    );
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let config = write_config(dir.path(), addr, Some(&not_pem));
    let out = ciosync(&["check", "--config", config.to_str().expect("utf-8")], &[]);
    assert_eq!(code(&out), 78);
    let message = stderr(&out);
    assert!(
        message.contains("`ca_file`") && message.contains("holds no PEM certificate"),
        "{message}"
    );
    assert!(
        message.contains("with-ca.toml:2:"),
        "names the file and line: {message}"
    );
}
