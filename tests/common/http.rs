//! Plain HTTP for tests that talk to a server themselves: a client, and a loopback server
//! that records what it is asked.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A client with a `timeout` that does not follow redirects (so a test sees the 3xx).
// Only the tests on the fakes use it so far.
#[cfg_attr(not(feature = "fake"), allow(dead_code))]
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build client")
}

/// A loopback HTTP server answering every request with `status`, and reporting each
/// request as `METHOD PATH` on the channel. It serves `requests` connections, then stops.
pub fn recording_server(status: u16, requests: usize) -> (SocketAddr, mpsc::Receiver<String>) {
    let (addr, received) = recording_server_with_bodies(status, requests);
    let (lines, only_lines) = mpsc::channel();
    thread::spawn(move || {
        for (line, _body) in received {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (addr, only_lines)
}

/// [`recording_server`] that also reports each request's body (read by its
/// `Content-Length`; empty without one).
pub fn recording_server_with_bodies(
    status: u16,
    requests: usize,
) -> (SocketAddr, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (paths, received) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            // Read the headers so the client sees a clean exchange, keeping the body's length.
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("header line");
                if header == "\r\n" || header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().expect("a numeric Content-Length");
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("the body");
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            paths
                .send((
                    format!("{method} {path}"),
                    String::from_utf8_lossy(&body).into_owned(),
                ))
                .expect("test still listening");
            let reason = if status == 200 { "OK" } else { "Not Found" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
            );
        }
    });
    (addr, received)
}
