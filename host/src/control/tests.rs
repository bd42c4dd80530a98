use super::*;

fn version(name: &str) -> VersionRecord {
    VersionRecord {
        version: format!("{name}{}", "0".repeat(63)),
        source: format!("{name}.wasm"),
        deployed_at_ms: 0,
        size: 1,
        previous: None,
    }
}

fn hash(name: &str) -> String {
    version(name).version
}

#[test]
fn rollback_returns_to_what_each_version_replaced_and_forgets_nothing() {
    let mut record = ServiceRecord::new("s", Origin::GatewayToml, None);
    for v in ["a", "b", "c"] {
        record.deploy(version(v), 5);
    }
    assert_eq!(record.rollback_target(None), Ok(hash("b")));
    record.current = Some(hash("b"));
    assert_eq!(record.rollback_target(None), Ok(hash("a")));
    // Rolling forward again: c is still known.
    assert_eq!(record.rollback_target(Some(&hash("c")[..8])), Ok(hash("c")));
    // A deploy over b remembers b, not c.
    record.deploy(version("d"), 5);
    assert_eq!(record.rollback_target(None), Ok(hash("b")));
    assert_eq!(record.versions.len(), 4);
}

#[test]
fn history_is_bounded_and_never_drops_the_current_version() {
    let mut record = ServiceRecord::new("s", Origin::GatewayToml, None);
    for v in ["a", "b", "c", "d"] {
        record.deploy(version(v), 2);
    }
    let kept: Vec<&str> = record.versions.iter().map(|v| &v.version[..1]).collect();
    assert_eq!(kept, ["b", "c", "d"]);
    assert_eq!(record.current.as_deref(), Some(hash("d").as_str()));
    record.deploy(version("b"), 2);
    let kept: Vec<&str> = record.versions.iter().map(|v| &v.version[..1]).collect();
    assert_eq!(
        kept,
        ["c", "d", "b"],
        "a redeploy moves a version to the end"
    );
    assert_eq!(record.rollback_target(None), Ok(hash("d")));
}

#[test]
fn the_first_version_has_nothing_to_roll_back_to() {
    let mut record = ServiceRecord::new("s", Origin::GatewayToml, None);
    record.deploy(version("a"), 5);
    assert_eq!(
        record.rollback_target(None),
        Err(VersionError::NoEarlier("s".into()))
    );
}

#[test]
fn versions_are_named_by_unique_prefixes_of_seven_or_more_digits() {
    let mut record = ServiceRecord::new("s", Origin::GatewayToml, None);
    record.deploy(version("a"), 5);
    record.deploy(
        VersionRecord {
            version: format!("a1{}", "0".repeat(62)),
            ..version("x")
        },
        5,
    );
    assert!(matches!(
        record.resolve("a00"),
        Err(VersionError::TooShort { .. })
    ));
    assert!(matches!(
        record.resolve("a0000000"),
        Ok(v) if v == hash("a")
    ));
    assert!(record.is_current(&format!("a1{}", "0".repeat(10))));
    assert!(!record.is_current("a000000"));
}

#[test]
fn records_survive_a_reopen() {
    let dir = std::env::temp_dir().join(format!("bazaar-ctl-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut record = ServiceRecord::new("s", Origin::Live, Some(ServiceSpec::default()));
    record.deploy(version("a"), 5);
    {
        let db = ControlDb::open(&dir).expect("open");
        db.put(&[&record]).expect("put");
    }
    let db = ControlDb::open(&dir).expect("reopen");
    assert_eq!(db.get("s").expect("get"), Some(record.clone()));
    assert_eq!(db.all().expect("all"), vec![record]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn concurrent_writers_each_return_with_their_records_durable() {
    let dir = std::env::temp_dir().join(format!("bazaar-ctl-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Arc::new(ControlDb::open(&dir).expect("open"));
    let start = Arc::new(std::sync::Barrier::new(16));
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (db, start) = (Arc::clone(&db), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut expected = Vec::new();
                start.wait();
                for round in 0..8 {
                    let mut record =
                        ServiceRecord::new(&format!("s{i}-{round}"), Origin::Live, None);
                    record.deploy(version(&format!("{:x}", i * 8 + round)), 5);
                    db.put(&[&record]).expect("put");
                    // Readable as soon as the put returns.
                    assert_eq!(db.get(&record.name).expect("get"), Some(record.clone()));
                    expected.push(record);
                }
                expected
            })
        })
        .collect();
    let mut expected: Vec<ServiceRecord> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    drop(db);
    let db = ControlDb::open(&dir).expect("reopen");
    let mut stored = db.all().expect("all");
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    stored.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        stored, expected,
        "every record of every writer, after a reopen"
    );
    std::fs::remove_dir_all(dir).ok();
}
