//! Misbehaviour on purpose: what the host must survive or cut short.

use bazaar_sdk::{Request, Response, Result, platform};
use std::time::Duration;

/// Panics, which traps the instance.
pub fn trap(_req: Request) -> Result<Response> {
    panic!("the testbed was asked to trap");
}

/// Spins forever, until the host's fuel or epoch deadline stops it.
pub fn spin(_req: Request) -> Result<Response> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Allocates until the host's memory limit stops it.
pub fn oom(_req: Request) -> Result<Response> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Blocks on the monotonic clock for `ms`, then answers `slept {ms}`.
pub fn sleep(req: Request) -> Result<Response> {
    let ms: u64 = req.param_as("ms")?;
    platform::sleep(Duration::from_millis(ms));
    Ok(Response::new(200).with_body(format!("slept {ms}")))
}

/// Sends the head at once, then `chunks` lines `chunk {i}\n` (from 0),
/// each flushed, `ms` apart: a slow body the host must stream, not buffer.
pub fn stream(req: Request) -> Result<Response> {
    let chunks: u32 = req.param_as("chunks")?;
    let pause = Duration::from_millis(req.param_as("ms")?);
    let headers = vec![("content-type".to_owned(), b"text/plain".to_vec())];
    Ok(Response::streaming(200, headers, move |body| {
        for i in 0..chunks {
            if i > 0 {
                platform::sleep(pause);
            }
            if body.send(format!("chunk {i}\n").as_bytes()).is_err() {
                return; // the client went away
            }
        }
    }))
}
