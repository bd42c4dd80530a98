//! The access log: one line per request, target `bazaar::access`.
//!
//! The line is formatted here and handed straight to the log writer
//! instead of going through `tracing`'s formatter as an event: that event
//! (fields visited through `Debug`, the span's fields formatted again,
//! one allocation per field) cost about 15% of a fresh-instance hello
//! request's throughput. `RUST_LOG` still decides whether the line is
//! written, and the line has the shape of the other log lines in both
//! formats.

use super::LogFormat;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The target access lines are logged under, for `RUST_LOG`.
pub const TARGET: &str = "bazaar::access";

/// What one access line says about a request.
#[derive(Debug, Clone, Copy)]
pub struct AccessEntry<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The request's path, without the query.
    pub path: &'a str,
    /// The service it was routed to, if any.
    pub service: Option<&'a str>,
    /// The version (content hash) that served it, if one did.
    pub version: Option<&'a str>,
    /// The status the client got.
    pub status: u16,
    /// From the request's arrival to its response head.
    pub elapsed: Duration,
}

/// Where the binary's access lines go; tests that do not set up logging
/// get a `tracing` event instead.
struct Sink {
    writer: super::writer::LogWriter,
    format: LogFormat,
    ansi: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends access lines to `writer`, the log writer set up by
/// [`super::init`], in `format`.
pub(super) fn install(writer: super::writer::LogWriter, format: LogFormat, ansi: bool) {
    let _ = SINK.set(Sink {
        writer,
        format,
        ansi,
    });
}

/// Writes the access line of one request, unless `RUST_LOG` leaves
/// `bazaar::access` out.
pub fn record(entry: &AccessEntry<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        tracing::info!(
            target: TARGET,
            request_id = entry.request_id,
            method = entry.method,
            path = entry.path,
            service = entry.service,
            version = entry.version.map(crate::loader::short),
            status = entry.status,
            elapsed_ms = millis(entry.elapsed),
            "served"
        );
        return;
    };
    match sink.format {
        LogFormat::Text => LINE.with_borrow_mut(|line| {
            // A buffer per thread, reused: no allocation per line.
            line.clear();
            text_line(line, entry, SystemTime::now(), sink.ansi);
            sink.writer.append(line.as_bytes());
        }),
        LogFormat::Json => sink
            .writer
            .append(json_line(entry, SystemTime::now()).as_bytes()),
    }
}

thread_local! {
    /// The text line being written on this thread.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The second of the last timestamp and its text up to the fraction,
    /// `2026-12-04T21:52:45.`: lines within a second share it.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// Appends `2026-12-04T21:52:45.369682Z  INFO request{request_id=…
/// service=hello version=48bcaf79ddfc}: bazaar::access: served method=GET
/// path=/hello status=200 elapsed_ms=0.048` to `line`, as `tracing`'s text
/// format would put it.
fn text_line(line: &mut String, entry: &AccessEntry<'_>, now: SystemTime, ansi: bool) {
    timestamp(line, now);
    line.push_str(if ansi {
        " \x1b[32m INFO\x1b[0m "
    } else {
        "  INFO "
    });
    // Pieces pushed one by one: `write!` and float formatting were a
    // visible share of a warm request's CPU.
    line.push_str("request{request_id=");
    line.push_str(entry.request_id);
    if let Some(service) = entry.service {
        line.push_str(" service=");
        line.push_str(service);
    }
    if let Some(version) = entry.version {
        line.push_str(" version=");
        line.push_str(crate::loader::short(version));
    }
    line.push_str("}: ");
    line.push_str(TARGET);
    line.push_str(": served method=");
    line.push_str(entry.method);
    line.push_str(" path=");
    line.push_str(entry.path);
    line.push_str(" status=");
    push_number(line, u64::from(entry.status), 1);
    line.push_str(" elapsed_ms=");
    // Milliseconds with three decimals, rounded to the microsecond.
    let micros = (entry.elapsed.as_nanos() + 500) / 1000;
    push_number(line, u64::try_from(micros / 1000).unwrap_or(u64::MAX), 1);
    line.push('.');
    push_number(line, (micros % 1000) as u64, 3);
    line.push('\n');
}

/// `value` in decimal, zero-padded to at least `width` digits.
fn push_number(out: &mut String, value: u64, width: usize) {
    // `itoa`: two digits a step and no UTF-8 check of its output, a third
    // of the instructions of a digit loop and `str::from_utf8`.
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    out.push_str(digits);
}

/// The same as one JSON object, in the shape of `tracing`'s JSON format:
/// the line's own fields under `fields`, the request's under `span`.
fn json_line(entry: &AccessEntry<'_>, now: SystemTime) -> String {
    let mut stamp = String::with_capacity(32);
    timestamp(&mut stamp, now);
    let mut span = serde_json::Map::new();
    span.insert("request_id".into(), entry.request_id.into());
    if let Some(service) = entry.service {
        span.insert("service".into(), service.into());
    }
    if let Some(version) = entry.version {
        span.insert("version".into(), crate::loader::short(version).into());
    }
    span.insert("name".into(), "request".into());
    let value = serde_json::json!({
        "timestamp": stamp,
        "level": "INFO",
        "fields": {
            "message": "served",
            "method": entry.method,
            "path": entry.path,
            "status": entry.status,
            "elapsed_ms": millis(entry.elapsed),
        },
        "target": TARGET,
        "span": span,
    });
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// `now` as RFC 3339 in UTC with microseconds: `2026-12-04T21:52:45.369682Z`.
fn timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            *second = secs;
            text.clear();
            second_stamp(text, secs);
        }
        out.push_str(text);
    });
    push_number(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// `secs` after the epoch up to the fraction: `2026-12-04T21:52:45.`.
fn second_stamp(out: &mut String, secs: u64) {
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    push_number(out, year, 4);
    out.push('-');
    push_number(out, month, 2);
    out.push('-');
    push_number(out, day, 2);
    out.push('T');
    push_number(out, of_day / 3600, 2);
    out.push(':');
    push_number(out, of_day % 3600 / 60, 2);
    out.push(':');
    push_number(out, of_day % 60, 2);
    out.push('.');
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's algorithm,
/// for dates from 1970 on).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let mut out = String::new();
        timestamp(&mut out, at(0, 0));
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
        out.clear();
        // 2024-02-29 (a leap day) 12:34:56.000789
        timestamp(&mut out, at(1_709_210_096, 789));
        assert_eq!(out, "2024-02-29T12:34:56.000789Z");
        out.clear();
        timestamp(&mut out, at(1_798_761_599, 999_999));
        assert_eq!(out, "2026-12-31T23:59:59.999999Z");
        // The same second again, and back to an earlier one.
        out.clear();
        timestamp(&mut out, at(1_798_761_599, 5));
        assert_eq!(out, "2026-12-31T23:59:59.000005Z");
        out.clear();
        timestamp(&mut out, at(0, 1));
        assert_eq!(out, "1970-01-01T00:00:00.000001Z");
    }

    fn entry() -> AccessEntry<'static> {
        AccessEntry {
            request_id: "r-1",
            method: "GET",
            path: "/hello",
            service: Some("hello"),
            version: Some("48bcaf79ddfc1509ef922ff3b98c9faa"),
            status: 200,
            elapsed: Duration::from_micros(48),
        }
    }

    #[test]
    fn a_text_line_reads_like_the_other_log_lines() {
        let mut line = String::new();
        text_line(&mut line, &entry(), at(1_709_210_096, 789), false);
        assert_eq!(
            line,
            "2024-02-29T12:34:56.000789Z  INFO request{request_id=r-1 service=hello \
             version=48bcaf79ddfc}: bazaar::access: served method=GET path=/hello \
             status=200 elapsed_ms=0.048\n"
        );
    }

    #[test]
    fn elapsed_times_round_to_the_microsecond() {
        for (elapsed, shown) in [
            (Duration::ZERO, "elapsed_ms=0.000\n"),
            (Duration::from_nanos(1_499), "elapsed_ms=0.001\n"),
            (Duration::from_nanos(1_500), "elapsed_ms=0.002\n"),
            (Duration::from_micros(1_000), "elapsed_ms=1.000\n"),
            (Duration::from_micros(12_345_678), "elapsed_ms=12345.678\n"),
        ] {
            let mut line = String::new();
            text_line(
                &mut line,
                &AccessEntry {
                    elapsed,
                    status: 503,
                    ..entry()
                },
                at(0, 0),
                false,
            );
            assert!(line.ends_with(shown), "{elapsed:?}: {line}");
            assert!(line.contains(" status=503 "), "{line}");
        }
    }

    #[test]
    fn a_json_line_has_the_fields_and_the_span() {
        let unrouted = AccessEntry {
            service: None,
            version: None,
            path: "/a\"b",
            status: 404,
            ..entry()
        };
        let line = json_line(&unrouted, at(0, 0));
        assert!(line.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["fields"]["status"], 404);
        assert_eq!(value["fields"]["path"], "/a\"b");
        assert_eq!(value["span"]["request_id"], "r-1");
        assert_eq!(value["span"].get("service"), None);
        assert_eq!(value["target"], TARGET);
        assert_eq!(value["timestamp"], "1970-01-01T00:00:00.000000Z");
    }
}
