//! Misbehaviour on purpose: what the host must survive or cut short.

use bazaar_sdk::bindings::wasi::http::types::Fields;
use bazaar_sdk::{Request, Response, Result, platform};
use serde_json::json;
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

/// Keeps the CPU busy for `ms` of wall time, then answers `burned {ms}`:
/// CPU time charged to the request, unlike [`sleep`].
pub fn burn(req: Request) -> Result<Response> {
    let ms: u64 = req.param_as("ms")?;
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    let mut x: u64 = 0;
    while std::time::Instant::now() < until {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    Ok(Response::new(200).with_body(format!("burned {ms}")))
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

/// Sends its head and one line `before the trap\n`, waits `ms`, then traps.
pub fn trap_mid_body(req: Request) -> Result<Response> {
    let pause = Duration::from_millis(req.param_as("ms")?);
    let headers = vec![("content-type".to_owned(), b"text/plain".to_vec())];
    Ok(Response::streaming(200, headers, move |body| {
        let _ = body.send(b"before the trap\n");
        if !pause.is_zero() {
            platform::sleep(pause);
        }
        panic!("the testbed was asked to trap in the middle of its body");
    }))
}

/// Grows memory `step_mib` at a time with `try_reserve` until a growth is
/// refused, then answers how far it got: `{"allocated_mib", "memory_mib"}`,
/// the second being the linear memory's size at the peak.
pub fn grow(req: Request) -> Result<Response> {
    let step: usize = req.param_as("step_mib")?;
    let step = step.max(1) << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk: Vec<u8> = Vec::new();
        if chunk.try_reserve_exact(step).is_err() {
            break;
        }
        chunk.resize(step, 1);
        hoard.push(std::hint::black_box(chunk));
    }
    let allocated_mib = hoard.len() * (step >> 20);
    let memory_mib = memory_bytes() >> 20;
    drop(hoard);
    Response::json(
        200,
        &json!({ "allocated_mib": allocated_mib, "memory_mib": memory_mib }),
    )
}

/// The size of the linear memory the allocator uses.
fn memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) << 16
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Recurses without end, until the stack overflows and traps.
pub fn recurse(_req: Request) -> Result<Response> {
    fn down(depth: u64) -> u64 {
        // A frame with memory in it, and a result used after the call, so
        // the compiler can turn neither into a loop.
        let frame = std::hint::black_box([depth; 16]);
        if frame[0] == u64::MAX {
            return depth;
        }
        std::hint::black_box(down(depth + 1)).wrapping_add(frame[15])
    }
    Ok(Response::new(200).with_body(down(0).to_string()))
}

/// Answers with one header of `kib` KiB.
pub fn huge_header(req: Request) -> Result<Response> {
    let kib: usize = req.param_as("kib")?;
    Ok(Response::new(200).with_header("x-huge", vec![b'a'; kib << 10]))
}

/// Creates `n` `fields` resources in the host and never drops them.
pub fn fields(req: Request) -> Result<Response> {
    let n: u32 = req.param_as("n")?;
    for _ in 0..n {
        std::mem::forget(Fields::new());
    }
    Ok(Response::new(200).with_body(format!("created {n} fields")))
}

/// Streams 64 KiB chunks for as long as anyone reads them.
pub fn endless(_req: Request) -> Result<Response> {
    let headers = vec![("content-type".to_owned(), b"text/plain".to_vec())];
    Ok(Response::streaming(200, headers, |body| {
        let chunk = vec![b'x'; 64 << 10];
        while body.send(&chunk).is_ok() {}
    }))
}

/// Streams one byte a second, forever.
pub fn slow_body(_req: Request) -> Result<Response> {
    let headers = vec![("content-type".to_owned(), b"text/plain".to_vec())];
    Ok(Response::streaming(200, headers, |body| {
        while body.send(b".").is_ok() {
            platform::sleep(Duration::from_secs(1));
        }
    }))
}
