//! Runs an axum router on loopback, on a dedicated thread with its own runtime, until the
//! handle is dropped.
//!
//! Each connection carries a [`ConnectionHandle`] in its requests' extensions (as
//! `ConnectInfo<ConnectionHandle>`), so fault injection can cut a connection mid-request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::serve::IncomingStream;
use tokio::sync::oneshot;

/// How long a stopping server waits for requests in flight before abandoning them; a hung
/// request (fault injection) must not hold up the test that drops the fake.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// A way to close one accepted connection from inside a request handler.
///
/// Holds a duplicate of the connection's socket; shutting it down makes the client see the
/// connection close before any response byte.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    remote_addr: SocketAddr,
    #[cfg(unix)]
    socket: Option<Arc<std::net::TcpStream>>,
}

impl ConnectionHandle {
    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Shuts the connection down in both directions. Returns `false` when this platform or
    /// connection does not allow it (the caller then needs another way to break the response).
    pub fn close(&self) -> bool {
        #[cfg(unix)]
        if let Some(socket) = &self.socket {
            return socket.shutdown(std::net::Shutdown::Both).is_ok();
        }
        false
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, tokio::net::TcpListener>>
    for ConnectionHandle
{
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ConnectionHandle {
            remote_addr: *stream.remote_addr(),
            #[cfg(unix)]
            socket: duplicate_socket(stream.io()),
        }
    }
}

/// A second descriptor for the same socket, so a handler can shut it down.
#[cfg(unix)]
fn duplicate_socket(stream: &tokio::net::TcpStream) -> Option<Arc<std::net::TcpStream>> {
    use std::os::fd::AsFd;
    match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Some(Arc::new(std::net::TcpStream::from(fd))),
        Err(e) => {
            tracing::debug!(error = %e, "Fake server could not duplicate a socket.");
            None
        }
    }
}

/// A running server. Dropping it stops the server and joins its thread.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `router` on `127.0.0.1` with a port chosen by the OS.
    ///
    /// # Errors
    /// When the socket cannot be bound or the runtime cannot be built.
    pub fn start(router: axum::Router) -> io::Result<Server> {
        Server::start_on(router, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves `router` on `addr`.
    ///
    /// # Errors
    /// When the socket cannot be bound or the runtime cannot be built.
    pub fn start_on(router: axum::Router, addr: SocketAddr) -> io::Result<Server> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ciosync-fake")
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-{addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "Fake server could not listen.");
                            return;
                        }
                    };
                    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                    let graceful = async move {
                        let _ = rx.await;
                        let _ = stop_tx.send(true);
                    };
                    let service = router.into_make_service_with_connect_info::<ConnectionHandle>();
                    let serve = axum::serve(listener, service).with_graceful_shutdown(graceful);
                    let grace_expired = async move {
                        let mut stop_rx = stop_rx;
                        let _ = stop_rx.wait_for(|stopped| *stopped).await;
                        tokio::time::sleep(SHUTDOWN_GRACE).await;
                    };
                    tokio::select! {
                        result = serve => {
                            if let Err(e) = result {
                                tracing::error!(error = %e, "Fake server stopped.");
                            }
                        }
                        () = grace_expired => {}
                    }
                });
                // Hung handlers (fault injection) must not keep the thread alive.
                runtime.shutdown_background();
            })?;
        Ok(Server {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
