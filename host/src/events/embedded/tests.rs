use super::*;
use redb::ReadableTableMetadata as _;

fn log() -> (EmbeddedLog, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bazaar-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    (EmbeddedLog::open(&dir).expect("open"), dir)
}

fn event(topic: &str, n: u8) -> StoredEvent {
    StoredEvent {
        id: format!("evt-{topic}-{n}"),
        topic: topic.into(),
        source: "pub".into(),
        payload: vec![n],
        published_at_ms: 1,
        request_id: None,
        traceparent: None,
    }
}

fn sub(topic: &str) -> Subscription {
    Subscription {
        subscriber: "sub".into(),
        topic: topic.into(),
    }
}

#[tokio::test]
async fn a_new_subscription_starts_after_the_newest_event() {
    let (log, dir) = log();
    log.append("pub".into(), vec![(1, event("t", 1))])
        .await
        .expect("append");
    log.subscribe(sub("t")).await.expect("subscribe");
    assert!(log.next(sub("t")).await.expect("next").is_none());
    log.append("pub".into(), vec![(2, event("t", 2))])
        .await
        .expect("append");
    let next = log.next(sub("t")).await.expect("next").expect("one event");
    assert_eq!(next.event.payload, vec![2]);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn relayed_entries_are_appended_once_and_delivered_in_order() {
    let (log, dir) = log();
    log.subscribe(sub("t")).await.expect("subscribe");
    let batch = vec![(1, event("t", 1)), (2, event("t", 2))];
    log.append("pub".into(), batch.clone())
        .await
        .expect("append");
    // A relay that crashed before trimming the outbox sends them again.
    log.append("pub".into(), batch).await.expect("append again");
    let mut seen = Vec::new();
    while let Some(p) = log.next(sub("t")).await.expect("next") {
        seen.push(p.event.payload[0]);
        log.ack(sub("t"), p).await.expect("ack");
    }
    assert_eq!(seen, [1, 2]);
    let stats = log.stats().await.expect("stats");
    assert_eq!(stats[0].backlog, 0);
    assert_eq!(stats[0].delivered_through, 2);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn failures_count_attempts_then_dead_letters_replay() {
    let (log, dir) = log();
    log.subscribe(sub("t")).await.expect("subscribe");
    log.append("pub".into(), vec![(1, event("t", 1)), (2, event("t", 2))])
        .await
        .expect("append");
    let first = log.next(sub("t")).await.expect("next").expect("event");
    log.retry_later(sub("t"), first, "boom".into(), 42)
        .await
        .expect("retry");
    let again = log.next(sub("t")).await.expect("next").expect("same event");
    assert_eq!(
        (again.event.payload[0], again.attempts, again.not_before_ms),
        (1, 1, 42)
    );
    log.dead_letter(sub("t"), again, "boom".into())
        .await
        .expect("dead");
    let following = log.next(sub("t")).await.expect("next").expect("next event");
    assert_eq!((following.event.payload[0], following.attempts), (2, 0));
    log.ack(sub("t"), following).await.expect("ack");

    let dead = log
        .dead_letters(Some("sub".into()))
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].error.as_str()), (2, "boom"));
    assert_eq!(log.replay("sub".into(), None).await.expect("replay"), 1);
    assert!(log.dead_letters(None).await.expect("dead").is_empty());
    let replayed = log.next(sub("t")).await.expect("next").expect("replayed");
    assert!(replayed.replayed);
    assert_eq!(replayed.event.id, "evt-t-1");
    log.ack(sub("t"), replayed).await.expect("ack");
    assert!(log.next(sub("t")).await.expect("next").is_none());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn handled_events_are_pruned_and_forget_clears_a_service() {
    let (log, dir) = log();
    log.subscribe(sub("t")).await.expect("subscribe");
    log.append("sub".into(), vec![(1, event("t", 1))])
        .await
        .expect("append");
    let p = log.next(sub("t")).await.expect("next").expect("event");
    log.ack(sub("t"), p).await.expect("ack");
    let count = {
        let txn = log.db.begin_read().expect("read");
        txn.open_table(LOG).expect("log").len().expect("len")
    };
    assert_eq!(count, 0, "an event every subscriber handled is dropped");
    log.forget("sub".into()).await.expect("forget");
    assert!(log.stats().await.expect("stats").is_empty());
    // Its outbox numbering starts again after a purge.
    let grown = log
        .append("sub".into(), vec![(1, event("u", 1))])
        .await
        .expect("append");
    assert_eq!(grown, ["u"]);
    std::fs::remove_dir_all(dir).ok();
}
