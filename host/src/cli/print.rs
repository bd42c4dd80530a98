//! Tables the CLI prints.

use crate::deploy::ServiceStatus;
use crate::events::{DeadLetter, SubscriptionStats};
use crate::fleet::follow::FleetView;
use crate::loader::short;

/// `bazaar services`.
pub fn services(services: &[ServiceStatus]) {
    println!(
        "{:<16} {:<8} {:<13} {:<13} ROUTES",
        "SERVICE", "STATE", "VERSION", "ORIGIN"
    );
    for s in services {
        println!(
            "{:<16} {:<8} {:<13} {:<13} {}",
            s.name,
            s.state,
            s.version.as_deref().map(short).unwrap_or("-"),
            s.origin,
            s.routes.join(" ")
        );
        if let Some(source) = &s.source {
            println!("  from: {source}");
        }
        let older: Vec<&str> = s
            .versions
            .iter()
            .filter(|v| !v.current)
            .map(|v| short(&v.version))
            .collect();
        if !older.is_empty() {
            println!("  other versions: {}", older.join(" "));
        }
        if !s.subscribes.is_empty() {
            println!("  subscribes: {}", s.subscribes.join(" "));
        }
        let warm = s
            .instance_reuse
            .map(|n| format!(", warm instances for {n} requests each"))
            .unwrap_or_default();
        println!(
            "  access: {}; limits: {} at once, {} MiB, {} ms CPU, {} ms{warm}",
            s.access,
            s.limits.max_concurrency,
            s.limits.memory_mib,
            s.limits.cpu_time_ms,
            s.limits.timeout_ms
        );
        if let Some(error) = &s.error {
            println!("  error: {error}");
        }
    }
}

/// `bazaar fleet`, and the end of `bazaar services` on a fleet.
pub fn fleet(fleet: &FleetView) {
    let converged = fleet
        .hosts
        .iter()
        .filter(|h| h.alive && h.converged)
        .count();
    let alive = fleet.hosts.iter().filter(|h| h.alive).count();
    println!(
        "FLEET ({converged} of {alive} live hosts serve the fleet's versions; this is {})",
        fleet.host
    );
    println!("{:<24} {:<22} {:<10} BEHIND", "HOST", "GATEWAY", "STATE");
    for h in &fleet.hosts {
        let state = match (h.alive, h.converged) {
            (false, _) => "gone",
            (true, true) => "converged",
            (true, false) => "behind",
        };
        let behind: Vec<String> = h
            .behind
            .iter()
            .map(|(service, serving)| {
                let wanted = fleet.versions.get(service).map_or("-", |v| short(v));
                let serving = if serving == "-" { "-" } else { short(serving) };
                format!("{service} {serving}→{wanted}")
            })
            .collect();
        println!(
            "{:<24} {:<22} {:<10} {}",
            h.host,
            h.gateway,
            state,
            if behind.is_empty() {
                "-".to_owned()
            } else {
                behind.join(", ")
            }
        );
    }
}

/// `bazaar events`.
pub fn subscriptions(stats: &[SubscriptionStats]) {
    println!(
        "{:<16} {:<24} {:>8} {:>8} {:>6}  LAST ERROR",
        "SUBSCRIBER", "TOPIC", "BACKLOG", "ATTEMPTS", "DEAD"
    );
    for s in stats {
        println!(
            "{:<16} {:<24} {:>8} {:>8} {:>6}  {}",
            s.subscriber,
            s.topic,
            s.backlog,
            s.attempts,
            s.dead_letters,
            s.last_error.as_deref().unwrap_or("-")
        );
    }
}

/// `bazaar dead-letters`.
pub fn dead_letters(letters: &[DeadLetter]) {
    println!(
        "{:<16} {:<24} {:<36} {:>8}  ERROR",
        "SUBSCRIBER", "TOPIC", "EVENT", "ATTEMPTS"
    );
    for d in letters {
        println!(
            "{:<16} {:<24} {:<36} {:>8}  {}",
            d.subscriber, d.topic, d.event.id, d.attempts, d.error
        );
    }
}
