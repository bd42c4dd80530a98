//! The host's metrics recorder folds histogram samples into buckets on its
//! own: a host nobody scrapes does not grow with every request it serves.
//! (A process of its own, so nothing else moves its resident memory.)

use std::time::Duration;

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

#[test]
fn histogram_samples_do_not_pile_up_without_a_scrape() {
    // Installs the recorder, and with it the upkeep.
    bazaar::metrics::handle();
    let histogram = metrics::histogram!("bazaar_request_duration_seconds", "service" => "upkeep");
    // Four million samples: about 33 MB while they wait for upkeep.
    let batch = || {
        for i in 0..4_000_000u32 {
            histogram.record(f64::from(i % 1000) / 1e6);
        }
    };
    let settle = bazaar::metrics::UPKEEP_EVERY * 2 + Duration::from_millis(500);
    batch();
    std::thread::sleep(settle);
    let before = resident();
    // Folded into buckets, the first batch's memory is free for the second.
    batch();
    std::thread::sleep(settle);
    let grown = resident().saturating_sub(before);
    assert!(
        grown < 12 << 20,
        "resident memory grew by {} MiB over a second batch of samples nobody scraped",
        grown >> 20
    );
}
