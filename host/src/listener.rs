//! Accepts connections for a router, with the limits plain `axum::serve`
//! does not set: a header-read timeout (which also closes idle keep-alive
//! connections), caps on header count and head size, a cap on open
//! connections, `TCP_NODELAY`, and the client's address for the gateway's
//! rate limits.
//!
//! What answers the requests is a [`Handler`]: an axum [`Router`] (the
//! admin API), or the gateway, which hyper calls directly, without a
//! router's layers, since every request takes the same path through it.
//!
//! By default the gateway's connections are served on the host's shared,
//! work-stealing runtime, where a core that runs dry takes over the ready
//! connections of one that is busy or descheduled. With `[gateway]
//! threads` above 0 they are served by threads of their own instead, one
//! single-threaded runtime each, a connection staying on the thread it was
//! given: no task moves between threads and no thread wakes another, but a
//! request waits whenever its thread waits for a core. Measured on a
//! 2-core machine with the load generator on the same cores: fresh
//! instances at 16 connections had a p99 of 1.1-1.9 ms on the shared
//! runtime and 0.8-3.8 ms (bimodal) on two threads of their own, which
//! made ~5% more requests a second at 16 connections and ~12% more at
//! 64; warm instances the same within the noise. With
//! `[gateway] batch_scheduling` those threads run under `SCHED_BATCH`:
//! woken by a request, one does not preempt the thread on its core; it runs
//! when that one sleeps or its slice ends, and finds more requests waiting.
//! Measured on the same machine (warm hello, 16 connections, the load
//! generator on the same cores): the load generator was preempted 0.14
//! times a request and then 0.002, the gateway threads slept 0.17 times a
//! request and then 0.09, throughput rose ~8%, and p99 went from 0.3 to
//! ~4 ms (a slice of waiting), which is why it is off by default.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

mod deadlines;

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

/// The threads that serve one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionThreads {
    /// Threads of their own; 0 serves the connections on the calling
    /// runtime.
    pub count: usize,
    /// Whether those threads run under `SCHED_BATCH` (Linux with glibc).
    pub batch_scheduling: bool,
}

impl ConnectionThreads {
    /// The calling runtime's own workers.
    pub const SHARED: Self = Self {
        count: 0,
        batch_scheduling: false,
    };
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
/// requests finish. With a thread count above 0 the connections are served
/// by that many threads of their own (see [`serve_on_threads`]); with 0, on
/// the calling runtime.
pub fn serve(
    listener: TcpListener,
    app: impl Handler,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
    threads: ConnectionThreads,
) -> std::io::Result<JoinHandle<()>> {
    if threads.count > 0 {
        return serve_on_threads(listener, app, limits, shutdown, threads);
    }
    Ok(tokio::spawn(async move {
        let connections = Connections::new(app, limits);
        accept_loop(&listener, limits, shutdown, |stream, peer, permit| {
            connections.spawn(stream, peer, (permit, None));
        })
        .await;
        // Stopping: new connections are refused while the open ones finish.
        drop(listener);
        connections.drain().await;
    }))
}

/// Thread per core: each connection is handed, once accepted, to the
/// thread serving the fewest, and served there to the end on that thread's
/// single-threaded runtime, so its requests never move between threads and
/// no thread wakes another to steal work. The returned task ends when every
/// thread has drained its connections.
fn serve_on_threads(
    listener: TcpListener,
    app: impl Handler,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
    threads: ConnectionThreads,
) -> std::io::Result<JoinHandle<()>> {
    let mut workers = Vec::with_capacity(threads.count);
    let mut finished = Vec::with_capacity(threads.count);
    for n in 0..threads.count {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        if threads.batch_scheduling {
            // A thread starts under its creator's policy: the runtime's
            // blocking threads (file and store work, name lookups) keep
            // the default one.
            builder.on_thread_start(|| {
                let _ = set_scheduling_policy(Policy::Default);
            });
        }
        let runtime = builder.enable_all().build()?;
        let (handoff, mut arrivals) = mpsc::unbounded_channel::<Accepted>();
        let (done, finished_rx) = oneshot::channel::<()>();
        let connections = Connections::new(app.clone(), limits);
        workers.push((handoff, Arc::new(Load::of_thread(n))));
        std::thread::Builder::new()
            .name(format!("bazaar-gateway-{n}"))
            .spawn(move || {
                if threads.batch_scheduling
                    && let Err(e) = set_scheduling_policy(Policy::Batch)
                    && n == 0
                {
                    tracing::warn!(
                        "gateway threads keep the default scheduling policy: {e}; \
                         set [gateway] batch_scheduling = false to silence this"
                    );
                }
                runtime.block_on(async move {
                    while let Some((stream, peer, held)) = arrivals.recv().await {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => connections.spawn(stream, peer, held),
                            Err(e) => tracing::warn!("cannot serve a connection from {peer}: {e}"),
                        }
                    }
                    connections.drain().await;
                });
                drop(runtime);
                let _ = done.send(());
            })?;
        finished.push(finished_rx);
    }
    Ok(tokio::spawn(async move {
        accept_loop(&listener, limits, shutdown, |stream, peer, permit| {
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("cannot hand over a connection from {peer}: {e}");
                    return;
                }
            };
            // The least busy thread; should one have ended, the next.
            let mut by_load: Vec<_> = workers.iter().collect();
            by_load.sort_by_key(|(_, load)| load.open.load(Ordering::Relaxed));
            let mut arrival = (stream, permit);
            for (handoff, load) in by_load {
                let (stream, permit) = arrival;
                match handoff.send((stream, peer, (permit, Some(Busy::on(load))))) {
                    Ok(()) => return,
                    Err(mpsc::error::SendError((stream, _, (permit, _)))) => {
                        arrival = (stream, permit);
                    }
                }
            }
            tracing::error!("no gateway thread is left to serve a connection from {peer}");
        })
        .await;
        // Stopping: new connections are refused while the open ones finish;
        // the threads drain once their hand-off channel closes.
        drop(listener);
        drop(workers);
        for thread in finished {
            let _ = thread.await;
        }
    }))
}

/// A thread's scheduling policy.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// `SCHED_OTHER`, what threads start with.
    Default,
    /// `SCHED_BATCH`: woken, the thread does not preempt the one running
    /// on its core.
    Batch,
}

/// Puts the calling thread under `policy`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_scheduling_policy(policy: Policy) -> std::io::Result<()> {
    let policy = match policy {
        Policy::Default => libc::SCHED_OTHER,
        Policy::Batch => libc::SCHED_BATCH,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // The exception to `unsafe_code`: a plain system call on the calling
    // thread (pid 0), which reads `param`, a local that outlives the call,
    // and keeps no pointer to it. Moving between the two non-real-time
    // policies needs no privilege.
    #[allow(unsafe_code)]
    let status = unsafe { libc::sched_setscheduler(0, policy, &raw const param) };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere (other systems, and musl, whose `sched_param` differs) the
/// policy is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_scheduling_policy(_policy: Policy) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "choosing a scheduling policy is supported on Linux with glibc only",
    ))
}

/// A connection accepted and not yet served, on its way to a thread.
type Accepted = (std::net::TcpStream, SocketAddr, Held);

/// What a connection holds until it closes: its slot under
/// `max_connections` and, served by a thread of its own, its place in that
/// thread's count.
type Held = (OwnedSemaphorePermit, Option<Busy>);

/// The connections one thread serves: what the hand-off compares, and
/// what `/metrics` shows.
struct Load {
    open: AtomicUsize,
    gauge: metrics::Gauge,
}

impl Load {
    fn of_thread(thread: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            gauge: crate::metrics::gateway_thread_connections(thread),
        }
    }
}

/// One connection counted against a thread while it is open.
struct Busy(Arc<Load>);

impl Busy {
    fn on(load: &Arc<Load>) -> Self {
        // Counted at the hand-off, not when the thread picks it up: a burst
        // of connections spreads before any thread has run.
        load.open.fetch_add(1, Ordering::Relaxed);
        load.gauge.increment(1.0);
        Self(Arc::clone(load))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.decrement(1.0);
    }
}

/// Accepts connections from `listener`, each once a slot is free, and hands
/// them to `dispatch`, until `shutdown` fires.
async fn accept_loop(
    listener: &TcpListener,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    mut dispatch: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
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
        dispatch(stream, peer, permit);
    }
}

/// The connections one runtime serves.
struct Connections<H> {
    builder: Arc<Builder<TokioExecutor>>,
    app: H,
    /// Each connection holds a receiver; draining waits until all are gone.
    closing: watch::Sender<bool>,
}

impl<H: Handler> Connections<H> {
    fn new(app: H, limits: ConnectionLimits) -> Self {
        let mut builder = Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        match deadlines::DeadlineTimer::shared() {
            Some(timer) => http1.timer(timer),
            None => http1.timer(TokioTimer::new()),
        };
        http1
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(limits.header_read_timeout))
            .keep_alive_timeout(limits.header_read_timeout);
        Self {
            builder: Arc::new(builder),
            app,
            closing: watch::channel(false).0,
        }
    }

    /// Serves `stream` on a task of its own until it closes or the
    /// connections drain.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, held: Held) {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |request| {
            let answered = app.call(request, peer);
            async move { Ok::<_, Infallible>(answered.await) }
        });
        let builder = Arc::clone(&self.builder);
        let mut closing = self.closing.subscribe();
        tokio::spawn(async move {
            let _open = crate::metrics::OpenConnection::open();
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped(&mut closing) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(held);
        });
    }

    /// Asks every connection to finish its request in flight and close, and
    /// waits until they have.
    async fn drain(self) {
        let _ = self.closing.send(true);
        self.closing.closed().await;
    }
}

/// Resolves once `signal` says stop (or its sender is gone).
async fn stopped(signal: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = signal.wait_for(|stop| *stop).await.map(|_| ());
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// The calling thread's scheduling policy: field 41 of its `/proc`
    /// stat line (0 normal, 3 batch).
    fn policy() -> String {
        std::fs::read_to_string("/proc/thread-self/stat")
            .ok()
            .and_then(|stat| {
                // Fields from the third on follow the command's `)`.
                let (_, after) = stat.rsplit_once(')')?;
                after.split_whitespace().nth(41 - 3).map(str::to_owned)
            })
            .unwrap_or_default()
    }

    /// Answers with the policy of the thread serving the request, then
    /// that of a blocking thread of the same runtime.
    #[derive(Clone)]
    struct ServingPolicy;

    impl Handler for ServingPolicy {
        fn call(
            &self,
            _request: http::Request<Incoming>,
            _peer: SocketAddr,
        ) -> impl Future<Output = Response> + Send + use<> {
            let serving = policy();
            async move {
                let blocking = tokio::task::spawn_blocking(policy)
                    .await
                    .unwrap_or_default();
                Response::new(Body::from(format!("{serving} {blocking}")))
            }
        }
    }

    async fn policy_serving(threads: ConnectionThreads) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 4,
            max_headers: 16,
            max_header_bytes: 8192,
        };
        let (stop, shutdown) = watch::channel(false);
        let served = serve(listener, ServingPolicy, limits, shutdown, threads).expect("serve");
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        let _ = stop.send(true);
        served.await.expect("listener");
        let (_, body) = answer.split_once("\r\n\r\n").expect("a response");
        body.to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gateway_threads_run_under_the_batch_policy_when_asked() {
        let batch = ConnectionThreads {
            count: 1,
            batch_scheduling: true,
        };
        let (other, batch_policy) = (libc::SCHED_OTHER, libc::SCHED_BATCH);
        // Its blocking threads (started from it) go back to the default.
        assert_eq!(
            policy_serving(batch).await,
            format!("{batch_policy} {other}")
        );
        let normal = ConnectionThreads {
            batch_scheduling: false,
            ..batch
        };
        assert_eq!(policy_serving(normal).await, format!("{other} {other}"));
        // The shared runtime's workers are left alone.
        assert_eq!(
            policy_serving(ConnectionThreads::SHARED).await,
            format!("{other} {other}")
        );
    }
}
