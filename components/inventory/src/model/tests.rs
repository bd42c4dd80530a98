//! Native tests of the stock rules and key formats.

use super::*;

fn item(product_id: &str, quantity: u64) -> Item {
    Item {
        product_id: product_id.into(),
        quantity,
    }
}

#[test]
fn expiry_keys_sort_by_time_and_parse_back() {
    let early = expiry_key(999, "b");
    let late = expiry_key(1_000, "a");
    assert!(early < late, "{early} should sort before {late}");
    assert_eq!(early, "expiry:00000000000000000999:b");
    assert_eq!(parse_expiry_key(&late), Some((1_000, "a")));
    assert_eq!(parse_expiry_key("expiry:12:a"), None);
    assert_eq!(parse_expiry_key("stock:x"), None);
}

#[test]
fn ids_with_separators_are_refused() {
    assert!(valid_id("id", "ab12-_.").is_ok());
    for bad in ["", "a:b", "a/b", "a?b", "é", &"x".repeat(65)] {
        assert_eq!(valid_id("id", bad).map_err(|e| e.status), Err(400), "{bad}");
    }
}

#[test]
fn lines_of_one_product_merge_in_first_seen_order() {
    let merged = merge_items(&[item("b", 1), item("a", 2), item("b", 3)]).unwrap();
    assert_eq!(merged, [item("b", 4), item("a", 2)]);
}

#[test]
fn empty_zero_and_oversized_lines_are_400() {
    assert_eq!(merge_items(&[]).map_err(|e| e.status), Err(400));
    assert_eq!(merge_items(&[item("a", 0)]).map_err(|e| e.status), Err(400));
    let half = MAX_QUANTITY / 2 + 1;
    let both = merge_items(&[item("a", half), item("a", half)]);
    assert_eq!(both.map_err(|e| e.status), Err(400));
}

#[test]
fn hold_moves_units_or_says_what_is_left() {
    let stock = Stock {
        available: 3,
        reserved: 1,
    };
    let held = hold(stock, "p", 2).unwrap();
    assert_eq!(
        held,
        Stock {
            available: 1,
            reserved: 3
        }
    );
    let refused = hold(stock, "p", 4).unwrap_err();
    assert_eq!(refused.status, 409);
    assert_eq!(
        refused.message,
        "not enough stock of product p: 3 available"
    );
}

#[test]
fn commit_drops_reserved_and_release_returns_it() {
    let stock = Stock {
        available: 1,
        reserved: 5,
    };
    assert_eq!(
        Settle::Commit.apply(stock, 2),
        Stock {
            available: 1,
            reserved: 3
        }
    );
    assert_eq!(
        Settle::Expire.apply(stock, 2),
        Stock {
            available: 3,
            reserved: 3
        }
    );
}

#[test]
fn repeats_are_fine_and_contradictions_are_409() {
    assert!(settled_outcome(Status::Committed, Settle::Commit, "o").is_ok());
    assert!(settled_outcome(Status::Expired, Settle::Release, "o").is_ok());
    assert!(settled_outcome(Status::Released, Settle::Expire, "o").is_ok());
    let late_commit = settled_outcome(Status::Expired, Settle::Commit, "o");
    assert_eq!(late_commit.map_err(|e| e.status), Err(409));
    let late_release = settled_outcome(Status::Committed, Settle::Release, "o");
    assert_eq!(late_release.map_err(|e| e.status), Err(409));
}

#[test]
fn statuses_are_lowercase_json() {
    let json = serde_json::to_string(&Status::Pending).unwrap();
    assert_eq!(json, "\"pending\"");
}
