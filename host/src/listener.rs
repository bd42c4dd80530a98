//! Accepts connections for a router, with the limits plain `axum::serve`
//! does not set: a header-read timeout (which also closes idle keep-alive
//! connections), caps on header count and head size, a cap on open
//! connections, `TCP_NODELAY`, and the client's address for the gateway's
//! rate limits.
//!
//! What answers the requests is a [`Handler`]: an axum [`Router`] (the
//! admin API), or the gateway, which hyper calls directly, without a
//! router's layers, since every request takes the same path through it.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// Answers the requests of one listener.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The response to `request`, which came from `peer`.
    fn call(
        &self,
        request: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<Self>;
}

impl Handler for Router {
    fn call(
        &self,
        request: http::Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        let answered = self.clone().oneshot(request.map(Body::new));
        async move {
            match answered.await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    }
}

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request's head, and the idle time of a keep-alive connection.
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait in the kernel's listen queue.
    pub max_connections: usize,
    /// Headers per request.
    pub max_headers: usize,
    /// Bytes of a request's head; also hyper's read buffer, so the most
    /// one read from the connection takes.
    pub max_header_bytes: usize,
}

/// Serves `app` on `listener` until `shutdown` fires, then lets open
/// requests finish.
pub fn serve(
    listener: TcpListener,
    app: impl Handler,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(limits.header_read_timeout))
            .keep_alive_timeout(limits.header_read_timeout);
        let builder = Arc::new(builder);
        let open = Arc::new(Semaphore::new(limits.max_connections));
        // Each connection holds a receiver; shutdown waits until all are gone.
        let (closing, _) = watch::channel(false);
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&open).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = stopped(&mut shutdown) => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, go on.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            };
            // A response's head and body may leave in two writes; without
            // this the body waits for the client's delayed ACK.
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let service = hyper::service::service_fn(move |request| {
                let answered = app.call(request, peer);
                async move { Ok::<_, Infallible>(answered.await) }
            });
            let builder = Arc::clone(&builder);
            let mut closing = closing.subscribe();
            tokio::spawn(async move {
                let _open = crate::metrics::OpenConnection::open();
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = stopped(&mut closing) => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
                drop(permit);
            });
        }
        let _ = closing.send(true);
        closing.closed().await;
    })
}

/// Resolves once `signal` says stop (or its sender is gone).
async fn stopped(signal: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = signal.wait_for(|stop| *stop).await.map(|_| ());
}
