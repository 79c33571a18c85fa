//! The test proxies put in front of a fake (to hold a request, rewrite a batch or record
//! the exchanges) share their plumbing here: starting one, and forwarding a request.

use std::sync::Arc;

use axum::body::Bytes;
use axum::handler::Handler;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ciosync::fake::server::Server;

/// Starts a proxy on loopback: every request goes to `handler`, with `state`.
pub fn start_proxy<H, T, S>(handler: H, state: Arc<S>) -> Server
where
    H: Handler<T, Arc<S>>,
    T: 'static,
    S: Send + Sync + 'static,
{
    Server::start(Router::new().fallback(handler).with_state(state)).expect("proxy starts")
}

/// Where a proxy forwards to, and the client it forwards with.
pub struct Upstream {
    target: String,
    client: reqwest::Client,
}

impl Upstream {
    /// Forwards to `target` (a base URL without a trailing slash).
    pub fn new(target: String) -> Upstream {
        Upstream {
            target,
            client: reqwest::Client::new(),
        }
    }

    /// Sends one request on to the target, the path and query kept, with its
    /// `Authorization` and `Content-Type`. The answer's status and body, or `None` when the
    /// target could not be reached.
    pub async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Option<(StatusCode, Bytes)> {
        let url = format!(
            "{}{}",
            self.target,
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut request = self.client.request(method, url).body(body);
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let reply = request.send().await.ok()?;
        let status = reply.status();
        Some((status, reply.bytes().await.unwrap_or_default()))
    }
}

/// A forwarded answer passed back as JSON; a bare 502 when the target was not reached.
pub fn json_reply(answer: Option<(StatusCode, Bytes)>) -> Response {
    match answer {
        Some((status, body)) => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}
