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
