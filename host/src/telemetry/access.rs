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
use std::fmt::Write as _;
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
    let line = match sink.format {
        LogFormat::Text => text_line(entry, SystemTime::now(), sink.ansi),
        LogFormat::Json => json_line(entry, SystemTime::now()),
    };
    sink.writer.append(line.as_bytes());
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// `2026-12-04T21:52:45.369682Z  INFO request{request_id=… service=hello
/// version=48bcaf79ddfc}: bazaar::access: served method=GET path=/hello
/// status=200 elapsed_ms=0.048`, as `tracing`'s text format would put it.
fn text_line(entry: &AccessEntry<'_>, now: SystemTime, ansi: bool) -> String {
    let mut line = String::with_capacity(256);
    timestamp(&mut line, now);
    line.push_str(if ansi {
        " \x1b[32m INFO\x1b[0m "
    } else {
        "  INFO "
    });
    let _ = write!(line, "request{{request_id={}", entry.request_id);
    if let Some(service) = entry.service {
        let _ = write!(line, " service={service}");
    }
    if let Some(version) = entry.version {
        let _ = write!(line, " version={}", crate::loader::short(version));
    }
    let _ = writeln!(
        line,
        "}}: {TARGET}: served method={} path={} status={} elapsed_ms={:.3}",
        entry.method,
        entry.path,
        entry.status,
        millis(entry.elapsed)
    );
    line
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
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_micros()
    );
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
        let line = text_line(&entry(), at(1_709_210_096, 789), false);
        assert_eq!(
            line,
            "2024-02-29T12:34:56.000789Z  INFO request{request_id=r-1 service=hello \
             version=48bcaf79ddfc}: bazaar::access: served method=GET path=/hello \
             status=200 elapsed_ms=0.048\n"
        );
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
