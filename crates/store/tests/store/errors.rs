//! Bad databases are refused, unchanged, with a clear error.

use leadscore_store::{SqliteStore, StoreError};

#[test]
fn a_file_that_is_not_sqlite_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "hello, this is not a database at all\n").unwrap();
    let e = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("not a leadscore database"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "hello, this is not a database at all\n"
    );
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    // The store starts SQLite first, as in the product (it configures
    // SQLite's page cache, which only works before SQLite starts).
    drop(SqliteStore::open(dir.path().join("first.db")).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .unwrap();
    drop(conn);
    let e = SqliteStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("other tables"), "{e}");
}

#[test]
fn reopening_keeps_everything() {
    let (messages, t) = crate::harness::generated(5, 30, 31);
    let (mut store, dir, path) = crate::harness::sqlite();
    crate::harness::activate(&mut store, "ecommerce");
    leadscore_store::Store::ingest(&mut store, crate::harness::incoming(&messages)).unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    crate::harness::assert_live_equals_batch(
        &store,
        &crate::harness::example("ecommerce"),
        &messages,
        t,
    );
    drop(dir);
}

#[test]
fn a_full_disk_fails_the_batch_and_keeps_the_store_consistent() {
    use crate::harness::{activate, assert_live_equals_batch, example, generated, incoming};
    use leadscore_store::Store;
    let (messages, t) = generated(60, 90, 32);
    let (half, rest) = messages.split_at(messages.len() / 2);
    // Also as the server runs it: the live states it keeps between batches
    // must not outlive a failed one.
    for served in [false, true] {
        let (mut store, _dir, _) = crate::harness::sqlite();
        if served {
            store
                .defer_durability(leadscore_store::DEFAULT_LIVE_CONTACTS)
                .unwrap();
        }
        activate(&mut store, "b2b");
        store.ingest(incoming(half)).unwrap();
        let before = store.stats().unwrap();
        store.limit_size(before.bytes + 64 * 1024).unwrap();
        let e = store.ingest(incoming(rest)).unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
        let after = store.stats().unwrap();
        assert_eq!(
            (after.events, after.contacts, after.ledger_entries),
            (before.events, before.contacts, before.ledger_entries)
        );
        assert_live_equals_batch(&store, &example("b2b"), half, t);
        // Room again: the same batch goes in whole.
        store.limit_size(1 << 40).unwrap();
        store.ingest(incoming(rest)).unwrap();
        assert_live_equals_batch(&store, &example("b2b"), &messages, t);
    }
}
