use super::*;
use crate::kvstore::Condition;

fn store() -> (EmbeddedStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!("bazaar-kv-{}", uuid::Uuid::new_v4()));
    (EmbeddedStore::open(&dir, "svc").expect("open store"), dir)
}

fn set(bucket: &str, key: &str, value: &[u8]) -> Write {
    Write::Set {
        bucket: bucket.into(),
        key: key.into(),
        value: value.to_vec(),
    }
}

#[test]
fn values_round_trip_and_missing_buckets_read_empty() {
    let (store, dir) = store();
    assert_eq!(store.get("b", "k").expect("get"), None);
    store
        .set_many("b", &[("k".into(), b"v".to_vec())])
        .expect("set");
    assert_eq!(store.get("b", "k").expect("get"), Some(b"v".to_vec()));
    assert!(store.exists("b", "k").expect("exists"));
    assert_eq!(store.get("other", "k").expect("get"), None);
    store.delete_many("b", &["k"]).expect("delete");
    assert_eq!(store.get("b", "k").expect("get"), None);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn increment_counts_and_rejects_non_counters() {
    let (store, dir) = store();
    assert_eq!(store.increment("b", "n", 2).expect("inc"), 2);
    assert_eq!(store.increment("b", "n", 3).expect("inc"), 5);
    assert_eq!(store.get("b", "n").expect("get"), Some(b"5".to_vec()));
    store
        .set_many("b", &[("s".into(), b"text".to_vec())])
        .expect("set");
    assert!(matches!(
        store.increment("b", "s", 1),
        Err(StoreError::NotACounter(_))
    ));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn list_keys_pages_by_key_and_survives_inserts_between_pages() {
    let (store, dir) = store();
    let pairs: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| (format!("k{i:05}"), Vec::new()))
        .collect();
    store.set_many("b", &pairs).expect("set");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (keys, more) = store.list_keys("b", after.as_deref()).expect("list");
        // A key written below the cursor between pages must not shift the
        // next page (it would, with offset paging).
        store
            .set_many("b", &[("a-early".into(), Vec::new())])
            .expect("set");
        after = keys.last().cloned();
        seen.extend(keys);
        if !more {
            break;
        }
    }
    assert_eq!(seen.len(), 2500, "every key once, none twice");
    assert_eq!(seen.first().map(String::as_str), Some("k00000"));
    assert_eq!(seen.last().map(String::as_str), Some("k02499"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn scan_honours_prefix_cursor_and_limit() {
    let (store, dir) = store();
    let pairs: Vec<(String, Vec<u8>)> = ["a:1", "p:1", "p:2", "p:3", "q:1"]
        .iter()
        .map(|k| ((*k).to_owned(), k.as_bytes().to_vec()))
        .collect();
    store.set_many("b", &pairs).expect("set");
    let first = store.scan("b", "p:", None, 2).expect("scan");
    let keys: Vec<&str> = first.entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["p:1", "p:2"]);
    assert_eq!(first.next.as_deref(), Some("p:2"));
    let second = store
        .scan("b", "p:", first.next.as_deref(), 2)
        .expect("scan");
    assert_eq!(second.entries, vec![("p:3".to_owned(), b"p:3".to_vec())]);
    assert_eq!(second.next, None, "the prefix ends here");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compare_and_swap_applies_only_on_the_expected_value() {
    let (store, dir) = store();
    assert!(
        store
            .compare_and_swap("b", "k", None, Some(b"1".to_vec()))
            .expect("cas")
    );
    assert!(
        !store
            .compare_and_swap("b", "k", None, Some(b"2".to_vec()))
            .expect("cas")
    );
    assert!(
        !store
            .compare_and_swap("b", "k", Some(b"0".to_vec()), Some(b"2".to_vec()))
            .expect("cas")
    );
    assert!(
        store
            .compare_and_swap("b", "k", Some(b"1".to_vec()), None)
            .expect("cas")
    );
    assert_eq!(store.get("b", "k").expect("get"), None);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_failed_condition_commits_nothing_not_even_the_outbox() {
    let (store, dir) = store();
    store
        .set_many("b", &[("taken".into(), b"x".to_vec())])
        .expect("set");
    let batch = Batch {
        conditions: vec![Condition {
            bucket: "b".into(),
            key: "taken".into(),
            expected: None,
        }],
        writes: vec![set("b", "other", b"y")],
        outbox: vec![b"event".to_vec()],
    };
    assert!(matches!(
        store.commit(&batch),
        Err(StoreError::Conflict { key, .. }) if key == "taken"
    ));
    assert_eq!(store.get("b", "other").expect("get"), None);
    assert!(store.outbox_page(10).expect("outbox").is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn outbox_entries_keep_their_order_and_sequence_across_trims() {
    let (store, dir) = store();
    for n in 0..3u8 {
        let batch = Batch {
            writes: vec![set("b", &format!("k{n}"), b"v")],
            outbox: vec![vec![n]],
            ..Batch::default()
        };
        store.commit(&batch).expect("commit");
    }
    let page = store.outbox_page(10).expect("outbox");
    assert_eq!(page, vec![(1, vec![0]), (2, vec![1]), (3, vec![2])]);
    store.outbox_remove_through(2).expect("trim");
    let batch = Batch {
        outbox: vec![vec![9]],
        ..Batch::default()
    };
    store.commit(&batch).expect("commit");
    assert_eq!(
        store.outbox_page(10).expect("outbox"),
        vec![(3, vec![2]), (4, vec![9])],
        "sequence numbers never repeat, even after the outbox empties"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn host_tables_are_not_guest_buckets() {
    assert!(crate::kvstore::bucket_name("__bazaar/outbox").is_err());
    assert_eq!(crate::kvstore::bucket_name("").expect("default"), "default");
}

#[test]
fn concurrent_writers_share_commits_and_each_gets_its_own_result() {
    let (store, dir) = store();
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let mut claimed = 0;
                for n in 0..25 {
                    store.increment("b", "count", 1).expect("increment");
                    // Every thread races for the same 25 claims: exactly one
                    // wins each, even when they share a transaction.
                    let claim = Batch {
                        conditions: vec![Condition {
                            bucket: "b".into(),
                            key: format!("claim:{n}"),
                            expected: None,
                        }],
                        writes: vec![set("b", &format!("claim:{n}"), format!("{i}").as_bytes())],
                        outbox: Vec::new(),
                    };
                    match store.commit(&claim) {
                        Ok(()) => claimed += 1,
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                claimed
            })
        })
        .collect();
    let claimed: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(claimed, 25, "each claim is won once");
    assert_eq!(store.get("b", "count").expect("get"), Some(b"400".to_vec()));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_file_is_made_by_the_first_write_and_opened_at_once_after() {
    let (store, dir) = store();
    let file = EmbeddedStore::dir_of(&dir, "svc").join("kv.redb");
    assert_eq!(store.get("b", "k").expect("get"), None);
    assert!(!store.exists("b", "k").expect("exists"));
    assert!(store.list_keys("b", None).expect("list").0.is_empty());
    assert!(store.outbox_page(10).expect("outbox").is_empty());
    store.outbox_remove_through(3).expect("nothing to trim");
    assert!(!file.exists(), "reads and trims create nothing");
    store
        .set_many("b", &[("k".into(), b"v".to_vec())])
        .expect("set");
    assert!(file.exists(), "the first write creates the file");
    drop(store);
    let reopened = EmbeddedStore::open(&dir, "svc").expect("reopen");
    assert!(
        reopened.db.get().is_some(),
        "an existing file is opened at once"
    );
    assert_eq!(reopened.get("b", "k").expect("get"), Some(b"v".to_vec()));
    drop(reopened);
    std::fs::remove_dir_all(dir).ok();
}
