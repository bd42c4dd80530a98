//! The benchmark's ceiling: a native axum server answering every request
//! with the text the `hello` component answers, so the two compare like for
//! like. `native-hello [ADDR]` (default `127.0.0.1:0`) prints
//! `native-hello listening on http://ADDR` once it accepts connections.

use axum::Router;
use axum::http::{Method, Uri, header};
use axum::response::IntoResponse;
use axum::serve::{Listener as _, ListenerExt as _};

/// The same bytes as `components/hello` for the same request.
async fn hello(method: Method, uri: Uri) -> impl IntoResponse {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or_default();
    let text = format!(
        "hello from a stock component: Method::{} {path}\n",
        debug_name(&method)
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
}

/// The guest prints `wasi:http`'s `Method` with `{:?}`: `Method::Get`...
fn debug_name(method: &Method) -> String {
    let mut name = method.as_str().to_ascii_lowercase();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    name
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    // TCP_NODELAY like any tuned server, so the ceiling has no Nagle stalls.
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!(
        "native-hello listening on http://{}",
        listener.local_addr()?
    );
    // SIGTERM ends the process through `exit`, which runs its exit
    // handlers: a build made by scripts/build-pgo to be profiled writes its
    // profile there. The serving path stays as it is.
    #[cfg(unix)]
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            terminate.recv().await;
            std::process::exit(0);
        }
    });
    let app = Router::new().fallback(hello);
    axum::serve(listener, app).await
}
