//! Guest stdout and stderr go through the host's log, tagged and escaped.

use crate::support::{self, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_output_is_tagged_escaped_and_capped() {
    let host = TestHost::start().await;
    let printed = host
        .http
        .get(host.url("/alpha/print"))
        .query(&[
            ("line", "marker-7731 \u{1b}[31mred"),
            ("times", "2"),
            ("stream", "stderr"),
        ])
        .header("x-request-id", "print-request-7731")
        .send()
        .await
        .unwrap();
    assert_eq!(printed.status(), 204);
    let logs = support::logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("marker-7731")).collect();
    assert_eq!(lines.len(), 2, "one log line per printed line: {lines:?}");
    for line in lines {
        assert!(line.contains("print-request-7731"), "request id: {line}");
        assert!(
            line.contains("service=alpha") && line.contains("stream=stderr"),
            "tags: {line}"
        );
        assert!(
            line.contains("\\u{1b}[31mred") && !line.contains('\u{1b}'),
            "escaped: {line}"
        );
    }

    // A flood costs only its own request, and is cut at the budget.
    let flood = host
        .http
        .get(host.url("/alpha/print"))
        .query(&[
            (
                "line",
                "flood-5512 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            ),
            ("times", "20000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(flood.status(), 204);
    let logs = support::logs();
    let kept = logs.lines().filter(|l| l.contains("flood-5512")).count();
    assert!(
        kept > 100 && kept < 2000,
        "about 64 KiB of lines kept, not 20000: {kept}"
    );
    assert!(
        logs.contains("wrote more than 65536 bytes"),
        "the cut is reported"
    );
    host.stop().await;
}
