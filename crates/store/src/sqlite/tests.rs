//! Unit tests of the SQLite backend: the writer's live cache, page caches, deferred
//! flushes, page swaps.

use super::*;
use crate::Admin as _;

fn track(user: &str, id: &str, at: &str) -> Incoming {
    let value = serde_json::json!({"type": "track", "userId": user,
        "event": "Form Submitted", "messageId": id, "timestamp": at});
    Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
}

/// The writer's cache of live states keeps what its own ingests wrote
/// and is emptied when this connection writes anything else or another
/// connection commits.
#[test]
fn the_live_cache_is_dropped_after_any_other_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store
        .defer_durability(crate::DEFAULT_LIVE_CONTACTS)
        .unwrap();
    let source = include_str!("../../../../examples/b2b.toml");
    let version = store.add_model("b2b.toml", source).unwrap().version;
    store.activate(version, &mut |_, _| {}).unwrap();
    let ingest = |store: &mut SqliteStore, user: &str, id: &str, at: &str| {
        store.ingest(vec![track(user, id, at)]).unwrap();
    };
    ingest(&mut store, "c", "c1", "2025-01-01T00:00:00Z");
    ingest(&mut store, "d", "d1", "2025-01-01T00:00:01Z");
    ingest(&mut store, "c", "c2", "2025-01-01T00:00:02Z");
    let holds =
        |store: &SqliteStore, c: &str| store.live.as_ref().unwrap().states.held(c).is_some();
    assert!(holds(&store, "c") && holds(&store, "d"));
    // Another write on this connection.
    store.add_outcomes(&[won("c")]).unwrap();
    ingest(&mut store, "c", "c3", "2025-01-01T00:00:03Z");
    assert!(holds(&store, "c") && !holds(&store, "d"));
    // A commit by another connection.
    ingest(&mut store, "d", "d2", "2025-01-01T00:00:04Z");
    assert!(holds(&store, "d"));
    let mut other = SqliteStore::open(&path).unwrap();
    ingest(&mut other, "e", "e1", "2025-01-01T00:00:05Z");
    ingest(&mut store, "c", "c4", "2025-01-01T00:00:06Z");
    assert!(holds(&store, "c") && !holds(&store, "d"));
}

/// A model whose trigger comes due 182 days after a contact's last view
/// (and queues one delivery, a log).
const REACTIVATION: &str = include_str!("../../tests/store/reactivation.toml");

/// Deliveries (claim, settle) write only the outbox and leave the
/// writer's cache of live states as it was; a due firing leaves it less
/// the contacts whose triggers it changed, whose next batch reads their
/// rows. The rows end as a writer without a cache leaves them. (A stale
/// entry would not show there: a firing's key makes its second recording
/// a no-op, so the cache's contents are checked directly.)
#[test]
fn deliveries_and_due_firings_keep_the_writer_cache() {
    use crate::Outbox as _;
    use leadscore_core::time::Duration as Span;
    let dir = tempfile::tempdir().unwrap();
    let day = |d: i64| Span::from_seconds(d * 86_400);
    let now = crate::now();
    let view = |user: &str, id: &str, at: leadscore_core::time::Timestamp| {
        let value = serde_json::json!({"type": "track", "userId": user,
            "event": "Product Viewed", "messageId": id, "timestamp": at.to_string()});
        Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
    };
    let ago = |d: i64| leadscore_core::time::Timestamp(now.0 - day(d).nanos());
    let mut stores = Vec::new();
    for cached in [true, false] {
        let mut store = SqliteStore::open(dir.path().join(format!("{cached}.db"))).unwrap();
        if cached {
            store
                .defer_durability(crate::DEFAULT_LIVE_CONTACTS)
                .unwrap();
        }
        let version = store.add_model("r.toml", REACTIVATION).unwrap().version;
        store.activate(version, &mut |_, _| {}).unwrap();
        // ana's trigger came due 18 days ago, bob's is 82 days away.
        store.ingest(vec![view("ana", "a1", ago(200))]).unwrap();
        store.ingest(vec![view("bob", "b1", ago(100))]).unwrap();
        let fired = store.fire_due(now, 10).unwrap();
        assert_eq!((fired.contacts, fired.firings), (1, 1));
        let claimed = store.claim(now, now.plus(day(1)), 10).unwrap();
        assert_eq!(claimed.len(), 1);
        let settled: Vec<_> = claimed
            .iter()
            .map(|d| (d.id, crate::Settle::Delivered))
            .collect();
        store.settle(&settled, now).unwrap();
        store.ingest(vec![view("carl", "c1", ago(1))]).unwrap();
        if let Some(live) = &store.live {
            assert!(live.states.held("bob").is_some(), "kept across deliveries");
            assert!(live.states.held("ana").is_none(), "forgotten by its firing");
        }
        // ana views again: the trigger fired once, and re-arms.
        let again = store.ingest(vec![view("ana", "a2", ago(1))]).unwrap();
        assert_eq!(again.firings, 0, "cached: {cached}");
        store.write_kept_rows().unwrap();
        stores.push(store);
    }
    let rows = |store: &SqliteStore| -> Vec<(String, Vec<u8>, Option<i64>)> {
        let mut stmt = store
            .conn
            .prepare("SELECT id, triggers, due FROM contacts ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(rows(&stores[0]), rows(&stores[1]));
    assert_eq!(rows(&stores[0]).len(), 3);
}

/// The writer's cache of identities forgets them when another connection
/// commits: a merge made there is followed by the next batch here.
#[test]
fn identities_merged_by_another_connection_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let source = include_str!("../../../../examples/b2b.toml");
    let open = |name: &str| {
        let mut store = SqliteStore::open(dir.path().join(name)).unwrap();
        let version = store.add_model("b2b.toml", source).unwrap().version;
        store.activate(version, &mut |_, _| {}).unwrap();
        store
    };
    let alias = || {
        let value = serde_json::json!({"type": "alias", "userId": "x", "previousId": "y",
            "messageId": "a1", "timestamp": "2025-01-01T00:00:02Z"});
        Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
    };
    let mut cached = open("cached.db");
    cached
        .defer_durability(crate::DEFAULT_LIVE_CONTACTS)
        .unwrap();
    let mut plain = open("plain.db");
    for store in [&mut cached, &mut plain] {
        store
            .ingest(vec![track("x", "x1", "2025-01-01T00:00:00Z")])
            .unwrap();
        store
            .ingest(vec![track("y", "y1", "2025-01-01T00:00:01Z")])
            .unwrap();
    }
    SqliteStore::open(dir.path().join("cached.db"))
        .unwrap()
        .ingest(vec![alias()])
        .unwrap();
    plain.ingest(vec![alias()]).unwrap();
    for store in [&mut cached, &mut plain] {
        store
            .ingest(vec![track("y", "y2", "2025-01-01T00:00:03Z")])
            .unwrap();
    }
    let rows = |store: &SqliteStore| -> Vec<(String, f64)> {
        pairs(&store.conn, "SELECT id, score FROM contacts ORDER BY id")
    };
    let read = |store: &SqliteStore| -> Vec<(String, f64)> {
        let records = store.contacts(None, 100).unwrap();
        records.into_iter().map(|c| (c.id, c.score.score)).collect()
    };
    assert_eq!(read(&cached).len(), 1, "y merged into one contact");
    assert_eq!(read(&cached), read(&plain));
    cached.write_kept_rows().unwrap();
    assert_eq!(rows(&mut cached), rows(&mut plain));
}

/// `examples/b2b.toml` without decay or inactivity: scores stay as
/// stored, so the live rows keep their score index.
fn still_b2b() -> String {
    let source = include_str!("../../../../examples/b2b.toml")
        .replace(r#"half_life = "60d""#, r#"half_life = "none""#);
    let start = source.find("[[inactivity]]").expect("an inactivity rule");
    let end = start + source[start..].find("\n# ---").expect("a section follows");
    format!("{}{}", &source[..start], &source[end..])
}

/// Whether the store has an index or table of this name.
fn has(store: &SqliteStore, name: &str) -> bool {
    store
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

/// A row the writer's cache knows is updated in place, its score and due
/// indexes only when those change: after batches that change a contact's
/// score, only its due time, or neither, every live row (score, due time,
/// ledger positions, state) and what the indexes answer are those of a
/// store that read and replaced every row. Under `b2b.toml` (scores move
/// with time: no score index) and under its still variant (score index).
#[test]
fn rows_updated_in_place_equal_rows_replaced() {
    let still = still_b2b();
    for (file, source) in [
        ("b2b.toml", include_str!("../../../../examples/b2b.toml")),
        ("still.toml", still.as_str()),
    ] {
        updates_in_place_equal_replaces(file, source);
    }
}

fn updates_in_place_equal_replaces(file: &str, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str, cached: bool| {
        let mut store = SqliteStore::open(dir.path().join(name)).unwrap();
        if cached {
            store
                .defer_durability(crate::DEFAULT_LIVE_CONTACTS)
                .unwrap();
        }
        let version = store.add_model(file, source).unwrap().version;
        store.activate(version, &mut |_, _| {}).unwrap();
        store
    };
    let (mut cached, mut plain) = (open("cached.db", true), open("plain.db", false));
    let indexed = file == "still.toml";
    assert_eq!(has(&cached, "contacts_score"), indexed, "{file}");
    let message = |user: &str, n: u32, event: &str, properties: serde_json::Value| {
        let value = serde_json::json!({"type": "track", "userId": user, "event": event,
            "properties": properties, "messageId": format!("{user}-{n}"),
            "timestamp": format!("2025-01-{:02}T{:02}:00:00Z", 1 + n / 24, n % 24)});
        Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
    };
    // Points (the score moves), an event no rule reads (only the time of
    // the last message and the due time move), pages and demo forms.
    let events = [
        ("Form Submitted", serde_json::json!({"form": "demo"})),
        ("Nothing Scored", serde_json::json!({})),
        ("Page Viewed", serde_json::json!({"path": "/pricing"})),
        ("Nothing Scored", serde_json::json!({})),
    ];
    /// id, score, due, ledger positions (in runs and in the row), state.
    type Stored = (String, f64, Option<i64>, Vec<i64>, Vec<u8>);
    // The rows as stored, once the writer has written those it keeps. The
    // positions are compared whole: a writer that keeps rows in memory
    // moves them to runs later than one that does not.
    let rows = |store: &mut SqliteStore| -> Vec<Stored> {
        store.write_kept_rows().unwrap();
        let mut stmt = store
            .conn
            .prepare("SELECT id, score, due, state FROM contacts ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        });
        let rows: Vec<_> = rows.unwrap().map(Result::unwrap).collect();
        rows.into_iter()
            .map(|(id, score, due, state)| {
                let seqs = contacts::ledger_seqs(&store.conn, &id, None).unwrap();
                (id, score, due, seqs, state)
            })
            .collect()
    };
    let by_index = |store: &SqliteStore| -> (Vec<String>, Vec<String>) {
        let ids = |sql: &str| -> Vec<String> {
            let mut stmt = store.conn.prepare(sql).unwrap();
            let ids = stmt.query_map([], |r| r.get(0)).unwrap();
            ids.map(Result::unwrap).collect()
        };
        let by_score = if indexed {
            ids("SELECT id FROM contacts INDEXED BY contacts_score ORDER BY score, id")
        } else {
            Vec::new()
        };
        (
            by_score,
            ids("SELECT id FROM contacts INDEXED BY contacts_due WHERE due IS NOT NULL ORDER BY due, id"),
        )
    };
    let (mut score_kept, mut score_moved, mut due_moved) = (false, false, false);
    for n in 0..24 {
        for user in ["a", "b", "c"] {
            let (event, properties) = &events[(n as usize + user.len()) % events.len()];
            let batch = || vec![message(user, n, event, properties.clone())];
            let before = rows(&mut cached).into_iter().find(|r| r.0 == user);
            cached.ingest(batch()).unwrap();
            plain.ingest(batch()).unwrap();
            let after = rows(&mut cached).into_iter().find(|r| r.0 == user).unwrap();
            if let Some(before) = before {
                score_kept |= before.1 == after.1;
                score_moved |= before.1 != after.1;
                due_moved |= before.2 != after.2;
            }
        }
        assert_eq!(
            rows(&mut cached),
            rows(&mut plain),
            "{file}, after batch {n}"
        );
        assert_eq!(
            by_index(&cached),
            by_index(&plain),
            "{file}, after batch {n}"
        );
    }
    // Then the three in one transaction each time: `a`'s score stays, `b`'s
    // moves, so that updates of different kinds share a transaction (and
    // its prepared statements), the narrower first.
    for n in 24..32 {
        let moving = ["Meeting Booked", "Opportunity Lost"][n as usize % 2];
        let batch = || -> Vec<Incoming> {
            ["a", "b", "c"]
                .into_iter()
                .map(|user| {
                    let event = if user == "a" {
                        "Nothing Scored"
                    } else {
                        moving
                    };
                    message(user, n, event, serde_json::json!({}))
                })
                .collect()
        };
        let before = rows(&mut cached);
        cached.ingest(batch()).unwrap();
        plain.ingest(batch()).unwrap();
        let after = rows(&mut cached);
        assert_ne!(before[1].1, after[1].1, "{file}: b's score moves");
        assert_eq!(rows(&mut plain), after, "{file}, after batch {n}");
        assert_eq!(
            by_index(&cached),
            by_index(&plain),
            "{file}, after batch {n}"
        );
    }
    assert!(
        score_kept && score_moved,
        "{file}: the score moves and stays"
    );
    // Only decay and inactivity set due times under this model.
    assert_eq!(due_moved, !indexed, "{file}: the due time moves");
    let holds = |c: &str| cached.live.as_ref().unwrap().states.held(c).is_some();
    assert!(
        holds("a") && holds("b") && holds("c"),
        "rows came from the cache"
    );
    assert_eq!(rows(&mut cached).len(), 3);
}

/// The live rows' score index exists exactly while the active model's
/// scores stay as stored: activations build and drop it, and a writer
/// starting (the server's, an import's) fits a store left otherwise, as
/// every store made before this rule is.
#[test]
fn the_score_index_follows_the_active_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let b2b = include_str!("../../../../examples/b2b.toml");
    let moving = store.add_model("b2b.toml", b2b).unwrap().version;
    let still = store.add_model("still.toml", &still_b2b()).unwrap().version;
    assert!(has(&store, "contacts_score"), "V3 made it");
    store.activate(moving, &mut |_, _| {}).unwrap();
    assert!(!has(&store, "contacts_score"));
    store
        .ingest(vec![track("c", "c1", "2025-01-01T00:00:00Z")])
        .unwrap();
    store.activate(still, &mut |_, _| {}).unwrap();
    assert!(has(&store, "contacts_score"));
    store.activate(moving, &mut |_, _| {}).unwrap();
    assert!(!has(&store, "contacts_score"));
    // A store left with the index under a moving model, and without it
    // under a still one.
    store
        .conn
        .execute_batch("CREATE INDEX contacts_score ON contacts (score, id)")
        .unwrap();
    let mut server = SqliteStore::open(&path).unwrap();
    server
        .defer_durability(crate::DEFAULT_LIVE_CONTACTS)
        .unwrap();
    assert!(
        !has(&server, "contacts_score"),
        "fitted by the server's writer"
    );
    server.activate(still, &mut |_, _| {}).unwrap();
    server
        .conn
        .execute_batch("DROP INDEX contacts_score")
        .unwrap();
    let mut import = SqliteStore::open(&path).unwrap();
    import.prepare_bulk_load().unwrap();
    assert!(has(&import, "contacts_score"), "fitted by an import");
    let check: String = import
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// A pragma's integer value on the store's connection.
fn pragma(store: &SqliteStore, name: &str) -> i64 {
    store
        .conn
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

/// An import's connection keeps a larger page cache; durability is
/// unchanged (every commit synchronous).
#[test]
fn a_bulk_load_gets_the_larger_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("t.db")).unwrap();
    assert_eq!(pragma(&store, "cache_size"), -2000, "SQLite's default");
    store.prepare_bulk_load().unwrap();
    assert_eq!(pragma(&store, "cache_size"), -BULK_CACHE_KIB);
    assert_eq!(pragma(&store, "synchronous"), 2, "still FULL");
}

/// Deferring durability turns the commit's own sync off, and the flush
/// syncs the WAL (or finds none left to sync).
#[test]
fn deferred_commits_are_flushed_through_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(pragma(&store, "synchronous"), 2, "FULL by default");
    assert_eq!(pragma(&store, "mmap_size"), 0, "SQLite's default");
    let mut flush = store
        .defer_durability(crate::DEFAULT_LIVE_CONTACTS)
        .unwrap()
        .expect("SQLite defers");
    assert_eq!(pragma(&store, "synchronous"), 1, "NORMAL once deferred");
    assert_eq!(pragma(&store, "cache_size"), -SERVER_CACHE_KIB);
    assert_eq!(pragma(&store, "mmap_size"), SERVER_MMAP_BYTES);
    store.add_key("h", crate::Scope::Read, "t").unwrap();
    assert!(wal_path(&path).exists());
    flush.flush().unwrap();
    drop(store);
    assert!(
        !wal_path(&path).exists(),
        "the last connection removes the WAL"
    );
    flush.flush().unwrap();
}

/// Page splits in a database under 1 GiB swap pages through the
/// lock-byte page's number; with the swap kept at key 0 the database
/// stays intact, across a rollback, a commit and a reopen.
#[test]
fn page_swaps_go_through_key_zero_and_leave_the_database_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = SqliteStore::open(&path).unwrap();
    assert!(
        crate::pcache::install(),
        "SQLite was started before the store"
    );
    let conn = &mut store.conn;
    conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
        .unwrap();
    // Keys in a scattered order split pages all over the tree.
    let key = |i: u64| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let fill = |conn: &mut rusqlite::Connection, range: std::ops::Range<u64>, keep: bool| {
        let tx = conn.transaction().unwrap();
        for i in range {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", (key(i), "x".repeat(200)))
                .unwrap();
        }
        if keep {
            tx.commit().unwrap();
        } // else rolled back on drop
    };
    let before = crate::pcache::swaps();
    fill(conn, 0..20_000, false);
    fill(conn, 0..20_000, true);
    assert!(crate::pcache::swaps() > before, "no page was swapped");
    let count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    let check = |conn: &rusqlite::Connection| -> String {
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((count(conn), check(conn).as_str()), (20_000, "ok"));
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        (count(&store.conn), check(&store.conn).as_str()),
        (20_000, "ok")
    );
}

/// The two columns of every row `sql` selects.
fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
) -> Vec<(A, B)> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// A new leadscore database at `path` with migrations up to `version`
/// only: a store made by an older release.
fn schema_at(path: &std::path::Path, version: i32) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(&mut conn)
        .unwrap();
    conn
}

/// A store made before migration V8 (history found through an index on
/// the ledger's contact column) reads the same histories after it, merged
/// ids' entries included, and loses the index.
#[test]
fn histories_survive_the_move_to_runs_of_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = schema_at(&path, 7);
        conn.execute_batch(
            "INSERT INTO identities VALUES ('a', 'a'), ('b', 'a'), ('c', 'c');
             INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause) VALUES
               ('a', 1, 10, 1, NULL, '{\"score\":1.0,\"tier\":\"\",\"grade\":\"\",\"stage\":\"\",\"status\":\"active\"}', 'message a1'),
               ('b', 2, 11, 1, NULL, '{\"score\":2.0,\"tier\":\"\",\"grade\":\"\",\"stage\":\"\",\"status\":\"active\"}', 'message b1'),
               ('c', 3, 12, 1, NULL, '{\"score\":3.0,\"tier\":\"\",\"grade\":\"\",\"stage\":\"\",\"status\":\"active\"}', 'message c1'),
               ('b', 4, 13, 1, '{\"score\":2.0,\"tier\":\"\",\"grade\":\"\",\"stage\":\"\",\"status\":\"active\"}', NULL, 'merge'),
               ('a', 4, 13, 1, '{\"score\":1.0,\"tier\":\"\",\"grade\":\"\",\"stage\":\"\",\"status\":\"active\"}', '{\"score\":3.0,\"tier\":\"\",\"grade\":\"\",\"stage\":\"\",\"status\":\"active\"}', 'merge');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let seqs = |id: &str| -> Vec<(i64, String)> {
        store
            .history(id)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.cause))
            .collect()
    };
    let causes = |list: &[(i64, &str)]| -> Vec<(i64, String)> {
        list.iter().map(|(s, c)| (*s, c.to_string())).collect()
    };
    assert_eq!(
        seqs("a"),
        causes(&[
            (1, "message a1"),
            (2, "message b1"),
            (4, "merge"),
            (5, "merge")
        ])
    );
    assert_eq!(
        seqs("b"),
        seqs("a"),
        "a merged id reads its contact's history"
    );
    assert_eq!(seqs("c"), causes(&[(3, "message c1")]));
    let index: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'ledger_contact'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 0);
}

/// A store made before migration V9 (live rows in WITHOUT ROWID tables)
/// holds the same rows after it, in rowid tables with both indexes, and
/// goes on ingesting exactly as a store made at V9.
#[test]
fn live_rows_survive_the_move_to_rowid_tables() {
    let dir = tempfile::tempdir().unwrap();
    let source = include_str!("../../../../examples/b2b.toml");
    let mut made = SqliteStore::open(dir.path().join("made.db")).unwrap();
    let version = made.add_model("b2b.toml", source).unwrap().version;
    made.activate(version, &mut |_, _| {}).unwrap();
    let alias = |id: &str, at: &str| {
        let value = serde_json::json!({"type": "alias", "userId": "x", "previousId": "y",
            "messageId": id, "timestamp": at});
        Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
    };
    made.ingest(vec![
        track("x", "x1", "2025-01-01T00:00:00Z"),
        track("y", "y1", "2025-01-01T00:00:01Z"),
        track("z", "z1", "2025-01-02T00:00:00Z"),
        alias("a1", "2025-01-03T00:00:00Z"),
    ])
    .unwrap();
    // The same tables' contents under the V8 schema.
    let old = dir.path().join("old.db");
    {
        let conn = schema_at(&old, 8);
        conn.execute(
            "ATTACH ?1 AS made",
            [dir.path().join("made.db").to_str().unwrap()],
        )
        .unwrap();
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM made.sqlite_schema WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'refinery_schema_history' \
                 AND name NOT IN ('deferred_rows', 'log_runs', 'message_ids')",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for table in &tables {
            conn.execute_batch(&format!(
                "DELETE FROM main.{table}; INSERT INTO main.{table} SELECT * FROM made.{table};"
            ))
            .unwrap();
        }
        conn.execute_batch("INSERT INTO contacts_next SELECT * FROM contacts")
            .unwrap();
        assert!(tables.len() > 10, "{tables:?}");
    }
    let schema = |store: &SqliteStore, name: &str| -> String {
        store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap()
    };
    let dump = |store: &SqliteStore, table: &str| -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = store
            .conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .unwrap();
        let width = stmt.column_count();
        let rows = stmt
            .query_map([], |r| (0..width).map(|i| r.get(i)).collect())
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let mut migrated = SqliteStore::open(&old).unwrap();
    for table in ["contacts", "contacts_next"] {
        assert!(
            !schema(&migrated, table).contains("WITHOUT ROWID"),
            "{}",
            schema(&migrated, table)
        );
    }
    assert!(schema(&migrated, "contacts_score").contains("(score, id)"));
    assert!(schema(&migrated, "contacts_due").contains("WHERE due IS NOT NULL"));
    let check: String = migrated
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_eq!(dump(&migrated, "contacts").len(), 2, "x (with y) and z");
    assert_eq!(dump(&migrated, "contacts"), dump(&made, "contacts"));
    assert_eq!(dump(&migrated, "contacts_next"), dump(&made, "contacts"));
    for store in [&mut made, &mut migrated] {
        store
            .ingest(vec![
                track("y", "y2", "2025-01-04T00:00:00Z"),
                track("z", "z2", "2025-01-04T00:00:01Z"),
                track("w", "w1", "2025-01-04T00:00:02Z"),
            ])
            .unwrap();
    }
    assert_eq!(dump(&migrated, "contacts").len(), 3);
    assert_eq!(dump(&migrated, "contacts"), dump(&made, "contacts"));
    let history = |store: &SqliteStore| -> Vec<(i64, String)> {
        let entries = store.history("y").unwrap().into_iter();
        entries.map(|e| (e.seq, e.cause)).collect()
    };
    assert_eq!(history(&migrated), history(&made));
}

/// A long history leaves the live row in runs: the row keeps a bounded
/// list of positions, and every entry is read back once.
#[test]
fn a_long_history_moves_to_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
    let runs = long_history(store, contacts::RUN_BYTES);
    assert!(runs >= 2, "{runs} runs");
}

/// A row's positions grow by new ones up to the limit (the text shared,
/// not copied, when nothing is added); one byte more makes them a run.
#[test]
fn positions_stay_up_to_the_limit_then_become_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
    let conn = &store.conn;
    let with = |old: Option<&str>, new: Option<&str>, limit| {
        contacts::history_with(conn, "c", old.map(Into::into), new, limit).unwrap()
    };
    assert_eq!(with(None, Some("7"), 8).as_deref(), Some("7"));
    assert_eq!(
        with(Some("1,2"), Some("3,4"), 7).as_deref(),
        Some("1,2,3,4")
    );
    let old: crate::engine::Positions = "1,2".into();
    let same = contacts::history_with(conn, "c", Some(old.clone()), None, 1).unwrap();
    assert!(std::sync::Arc::ptr_eq(&old, &same.unwrap()));
    let runs = || -> Vec<(i64, String)> {
        conn.prepare("SELECT first_seq, seqs FROM ledger_runs WHERE contact = 'c'")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert!(runs().is_empty());
    assert_eq!(with(Some("1,2"), Some("3,4"), 6), None);
    assert_eq!(runs(), vec![(1, "1,2,3,4".to_string())]);
    assert_eq!(with(None, Some("15,16"), 4), None);
    assert_eq!(runs().len(), 2);
}

/// The server's writer, which keeps rows in memory, lets a row's positions
/// grow longer before they become a run (`KEPT_RUN_BYTES`): fewer runs,
/// the same entries read back.
#[test]
fn a_kept_row_makes_fewer_runs_of_a_long_history() {
    let dir = tempfile::tempdir().unwrap();
    let plain = long_history(
        SqliteStore::open(dir.path().join("plain.db")).unwrap(),
        contacts::RUN_BYTES,
    );
    let mut store = SqliteStore::open(dir.path().join("kept.db")).unwrap();
    store.defer_durability(1_000).unwrap();
    let kept = long_history(store, contacts::KEPT_RUN_BYTES);
    assert!(kept >= 2, "{kept} runs");
    assert!(kept * 3 < plain, "{kept} runs kept, {plain} plain");
}

/// Ingests 300 messages of one contact into `store` (`b2b.toml` active),
/// one per transaction, each changing its score; checks that its history
/// reads back every entry once, in order, and that its stored row keeps
/// at most about `limit` bytes of positions; returns the runs written.
fn long_history(mut store: SqliteStore, limit: usize) -> i64 {
    let source = include_str!("../../../../examples/b2b.toml");
    let version = store.add_model("b2b.toml", source).unwrap().version;
    store.activate(version, &mut |_, _| {}).unwrap();
    let mut recorded = 0;
    // Irregular gaps: the decayed score differs at every message.
    let mut at = 1_735_689_600;
    for i in 0..300 {
        at += 86_400 * (20 + i * 37 % 90);
        let at = Timestamp::from_seconds(at).to_string();
        let value = serde_json::json!({"type": "track", "userId": "c",
            "event": "Meeting Booked", "messageId": format!("c{i}"), "timestamp": at});
        let message = leadscore_core::event::Message::from_json(value, None, None).unwrap();
        recorded += store
            .ingest(vec![Incoming::new(message)])
            .unwrap()
            .ledger_entries;
    }
    let history = store.history("c").unwrap();
    assert_eq!(history.len() as u64, recorded);
    assert!(recorded > 100, "{recorded} entries");
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    store.write_kept_rows().unwrap();
    let (runs, longest): (i64, i64) = store
        .conn
        .query_row(
            "SELECT (SELECT count(*) FROM ledger_runs), (SELECT max(length(history)) FROM contacts)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(longest as usize <= limit + 20, "{longest} bytes");
    runs
}

/// A store in a temporary directory (kept alive by the first value) whose
/// writer keeps rows in memory (budget 1,000), `b2b.toml` active.
fn deferring_store() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.defer_durability(1_000).unwrap();
    let source = include_str!("../../../../examples/b2b.toml");
    let version = store.add_model("b2b.toml", source).unwrap().version;
    store.activate(version, &mut |_, _| {}).unwrap();
    (dir, path, store)
}

/// The writer keeps an update of an existing live row in memory: the
/// stored row stays as it was, every read (this connection's and
/// another's) sees the new one, and it is written when it is due, when
/// the store closes, or, after a crash, derived again by the next writer.
#[test]
fn updates_of_live_rows_are_kept_in_memory_until_written() {
    let (_dir, path, mut store) = deferring_store();
    let stored_score = |store: &SqliteStore| -> f64 {
        store
            .conn
            .query_row("SELECT score FROM contacts WHERE id = 'c'", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let recorded = |store: &SqliteStore| deferred::recorded(&store.conn).unwrap();
    store
        .ingest(vec![track("c", "c1", "2025-01-01T00:00:00Z")])
        .unwrap();
    assert_eq!(store.kept_rows(), 0, "a new row is written at once");
    let first = stored_score(&store);
    store
        .ingest(vec![track("c", "c2", "2025-01-01T00:00:01Z")])
        .unwrap();
    assert_eq!(store.kept_rows(), 1);
    assert_eq!(stored_score(&store), first, "the stored row is as it was");
    let live = store.contact("c").unwrap().unwrap().score.score;
    assert!(live > first, "{live} after {first}");
    let reader = SqliteStore::open(&path).unwrap();
    assert_eq!(reader.contact("c").unwrap().unwrap().score.score, live);
    let mark = recorded(&store).expect("the kept row is recorded");
    assert_eq!(mark.events_from, 2, "the log's position when it was kept");
    // A crash loses it; the next writer derives it again.
    store.crash();
    assert_eq!(reader.contact("c").unwrap().unwrap().score.score, first);
    let mut store = SqliteStore::open(&path).unwrap();
    store.defer_durability(1_000).unwrap();
    assert!(recorded(&store).is_none());
    assert_eq!(stored_score(&store), live);
    // Kept again, then written when the store closes.
    store
        .ingest(vec![track("c", "c3", "2025-01-01T00:00:02Z")])
        .unwrap();
    assert_eq!(store.kept_rows(), 1);
    let live = store.contact("c").unwrap().unwrap().score.score;
    drop(store);
    assert_eq!(stored_score(&reader), live);
    assert!(recorded(&reader).is_none());
    // Past the budget, the oldest rows are written by the next commit.
    let mut store = SqliteStore::open(&path).unwrap();
    store.defer_durability(1).unwrap();
    for (i, user) in ["a", "b", "d", "a", "b", "d"].iter().enumerate() {
        let at = format!("2025-01-01T00:01:0{i}Z");
        store
            .ingest(vec![track(user, &format!("m{i}"), &at)])
            .unwrap();
    }
    assert_eq!(store.kept_rows(), 1, "one row kept at most");
}

/// The log's positions of an erased contact go wherever they are: in
/// runs, and in the writer's memory (which would otherwise write them in
/// a run later, naming the erased id again).
#[test]
fn an_erased_contact_leaves_no_positions_behind() {
    let (_dir, path, mut store) = deferring_store();
    let runs = |store: &SqliteStore, id: &str| -> i64 {
        store
            .conn
            .query_row(
                "SELECT count(*) FROM log_runs WHERE own_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
    };
    store
        .ingest(vec![
            track("c", "c1", "2025-01-01T00:00:00Z"),
            track("d", "d1", "2025-01-01T00:00:00Z"),
        ])
        .unwrap();
    // Written in runs by another connection's transaction.
    SqliteStore::open(&path)
        .unwrap()
        .ingest(vec![track("c", "c2", "2025-01-01T00:00:01Z")])
        .unwrap();
    assert_eq!(
        runs(&store, "c"),
        2,
        "the settled positions and the import's"
    );
    // Kept in the writer's memory.
    store
        .ingest(vec![
            track("c", "c3", "2025-01-01T00:00:02Z"),
            track("d", "d2", "2025-01-01T00:00:02Z"),
        ])
        .unwrap();
    assert_eq!(runs(&store, "c"), 2);
    let report = store.erase("c").unwrap().unwrap();
    assert_eq!(report.events, 3);
    store.write_kept_rows().unwrap();
    assert_eq!(runs(&store, "c"), 0);
    assert!(runs(&store, "d") > 0);
    let log = store.contact_messages("d").unwrap().unwrap();
    let ids: Vec<&str> = log.messages.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["d1", "d2"]);
}

/// A random UUID (version 4) made of `a` and `n`.
fn uuid(a: usize, n: usize) -> String {
    format!("{a:08x}-0000-4000-8000-{n:012x}")
}

/// The writer of `store` freezes `freeze_at` pending `message_ids` entries
/// and writes at least `min_slice` of them a transaction.
fn small_generations(store: &SqliteStore, freeze_at: usize, min_slice: usize) {
    let mut ids = store.overlay.ids();
    ids.freeze_at = freeze_at;
    ids.min_slice = min_slice;
}

/// How many entries `message_ids` holds.
fn indexed(store: &SqliteStore) -> i64 {
    store
        .conn
        .query_row("SELECT count(*) FROM message_ids", [], |r| r.get(0))
        .unwrap()
}

/// A resent message with a random UUID is a duplicate wherever its
/// messageId's index entry is: appended by the same transaction, pending
/// in the writer's memory, in a frozen generation written in part, in
/// `message_ids`, or only in the log after a crash (the next connection to
/// write indexes it).
#[test]
fn message_ids_are_found_wherever_their_entry_is() {
    let (_dir, path, mut store) = deferring_store();
    small_generations(&store, 4, 2);
    let recorded = |store: &SqliteStore| deferred::recorded(&store.conn).unwrap();
    let at = |i: usize| format!("2025-01-01T00:00:{i:02}Z");
    let batch = |ids: &[usize]| -> Vec<Incoming> {
        ids.iter()
            .map(|i| track("c", &uuid(0, *i), &at(*i)))
            .collect()
    };
    let before = indexed(&store);
    // The same messageId twice in one transaction.
    let report = store.ingest(batch(&[0, 1, 2, 0])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (3, 1));
    let report = store.ingest(batch(&[3])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 0));
    // Four pending: in memory only.
    assert_eq!(indexed(&store), before);
    let first = recorded(&store).and_then(|r| r.ids_from);
    assert!(first.is_some(), "{:?}", recorded(&store));
    // This transaction freezes them and writes the first two in key order.
    let report = store.ingest(batch(&[4, 1])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
    assert_eq!(indexed(&store), before + 2);
    assert_eq!(recorded(&store).and_then(|r| r.ids_from), first);
    let report = store.ingest(batch(&[0, 1, 2, 3, 4])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (0, 5));
    // An earlier copy replaces the stored one (SPEC §1), in place.
    let earlier = track("c", &uuid(0, 3), "2024-12-31T00:00:00Z");
    let report = store.ingest(vec![earlier]).unwrap();
    assert_eq!((report.replaced, report.duplicates), (1, 0));
    let ts: i64 = store
        .conn
        .query_row(
            "SELECT ts FROM events WHERE message_id = ?1",
            [uuid(0, 3)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ts, Timestamp::parse("2024-12-31T00:00:00Z").unwrap().0);
    assert_eq!(indexed(&store), before + 4, "the second slice");
    // Another connection of this process writes: it indexes the log past
    // the recorded position, and the writer forgets its memory.
    let mut other = SqliteStore::open(&path).unwrap();
    let report = other.ingest(batch(&[4, 7])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
    assert_eq!(indexed(&other), before + 6);
    assert!(recorded(&other).is_none());
    let report = store.ingest(batch(&[4, 7, 8])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 2));
    assert_eq!(indexed(&store), before + 6);
    // A crash loses the memory; another connection indexes the log.
    store.crash();
    let report = other.ingest(batch(&[0, 1, 2, 3, 4, 5, 7, 8])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 7));
    assert_eq!(indexed(&other), before + 8);
    assert!(recorded(&other).is_none());
    // The writer's end writes every pending entry.
    let mut store = SqliteStore::open(&path).unwrap();
    store.defer_durability(1_000).unwrap();
    let report = store.ingest(batch(&[6, 5])).unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
    assert_eq!(indexed(&store), before + 8);
    store.write_kept_rows().unwrap();
    assert_eq!(indexed(&other), before + 9);
    assert!(recorded(&other).is_none());
}

/// Erasing a contact deletes its events' entries from `message_ids` and
/// from the writer's memory (which would otherwise write them later):
/// pending, or in a frozen generation not written yet.
#[test]
fn an_erased_contact_leaves_no_message_ids_behind() {
    let (_dir, _path, mut store) = deferring_store();
    small_generations(&store, 3, 1);
    let mut users = ["a", "b", "c", "d"];
    let id = |u: &str, n: usize| uuid(usize::from(u.as_bytes()[0]), n);
    // By their first messages' key order.
    users.sort_by_key(|u| msgids::key(&id(u, 1)));
    let [first, second, _, last] = users;
    let hashes = |store: &SqliteStore| -> Vec<i64> {
        let mut stmt = store.conn.prepare("SELECT hash FROM message_ids").unwrap();
        let mut found: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        found.sort_unstable();
        found
    };
    // The first's messages last: an erasure of the contact holding the
    // log's last positions writes everything (the next test).
    let messages = |n: usize| -> Vec<Incoming> {
        users
            .iter()
            .cycle()
            .skip(1)
            .take(users.len())
            .map(|u| track(u, &id(u, n), &format!("2025-01-01T00:00:0{n}Z")))
            .collect()
    };
    store.ingest(messages(1)).unwrap();
    // Frozen, and the first in key order written.
    store.ingest(messages(2)).unwrap();
    assert_eq!(hashes(&store), [msgids::key(&id(first, 1))]);
    // The erasing transaction's slice is the second's entry: skipped.
    assert_eq!(store.erase(second).unwrap().unwrap().events, 2);
    assert_eq!(hashes(&store).len(), 1);
    // The last's entry is past the next slice: it leaves the generation.
    assert_eq!(store.erase(last).unwrap().unwrap().events, 2);
    assert_eq!(hashes(&store).len(), 2);
    store.write_kept_rows().unwrap();
    let mut want: Vec<i64> = users
        .iter()
        .filter(|u| ![second, last].contains(*u))
        .flat_map(|u| [1, 2].map(|n| msgids::key(&id(u, n))))
        .collect();
    want.sort_unstable();
    assert_eq!(hashes(&store), want);
    // From the table.
    store.erase(first).unwrap().unwrap();
    assert_eq!(hashes(&store).len(), 2);
}

/// A store made before migration V13 keeps its firings, their positions
/// and what points at them, and never gives a position again, even the
/// largest one's once it is deleted.
#[test]
fn firings_keep_their_positions_through_v13() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    {
        let conn = schema_at(&old, 12);
        conn.execute_batch(&[firing(Some(3), "a"), firing(Some(9), "b")].concat())
            .unwrap();
        conn.execute_batch(
            "INSERT INTO outbox (firing, key, destination, payload, status, next_attempt, created_at)
             VALUES (9, 'b/0', 'log', '{}', 'pending', 0, 0);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&old).unwrap();
    let kept: Vec<(i64, String)> = pairs(&store.conn, "SELECT seq, key FROM firings ORDER BY seq");
    assert_eq!(kept, [(3, "a".to_string()), (9, "b".to_string())]);
    let joined = count(
        &store.conn,
        "SELECT count(*) FROM outbox JOIN firings ON firings.seq = outbox.firing",
        [],
    )
    .unwrap();
    assert_eq!(joined, 1);
    store
        .conn
        .execute_batch(&["DELETE FROM firings WHERE seq = 9;", &firing(None, "c")].concat())
        .unwrap();
    let next: i64 = store
        .conn
        .query_row("SELECT seq FROM firings WHERE key = 'c'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(next, 10);
    let indexes = count(
        &store.conn,
        "SELECT count(*) FROM sqlite_master WHERE tbl_name = 'firings' AND type = 'index'
         AND name IN ('firings_contact', 'firings_trigger')",
        [],
    )
    .unwrap();
    assert_eq!(indexes, 2);
}

/// Inserts a firing at `seq`, or (`None`) where SQLite puts it, as the
/// store does.
fn firing(seq: Option<i64>, key: &str) -> String {
    let seq = seq.map_or("NULL".to_string(), |s| s.to_string());
    format!(
        "INSERT INTO firings (seq, key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation)
         VALUES ({seq}, '{key}', 't', 'c', 1, 2, 0, 1, '{{}}', '{{}}');"
    )
}

/// A store made before migration V12 (a unique index on the log's
/// message_id) has every event indexed by the first write after it, and
/// its messages are still duplicates.
#[test]
fn message_ids_survive_the_move_to_their_own_index() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    {
        let conn = schema_at(&old, 11);
        let mut made = SqliteStore::open(dir.path().join("made.db")).unwrap();
        made.ingest(vec![
            track("x", &uuid(1, 1), "2025-01-01T00:00:00Z"),
            track("y", "y1", "2025-01-01T00:00:01Z"),
            track("y", &uuid(2, 1), "2025-01-01T00:00:01Z"),
        ])
        .unwrap();
        drop(made);
        conn.execute(
            "ATTACH ?1 AS made",
            [dir.path().join("made.db").to_str().unwrap()],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO events SELECT seq, message_id, own_id, ts, body FROM made.events;
             INSERT INTO identities SELECT * FROM made.identities;
             INSERT INTO log_runs SELECT * FROM made.log_runs;",
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(&old).unwrap();
    let recorded = deferred::recorded(&store.conn).unwrap().unwrap();
    assert_eq!(recorded.ids_from, Some(1));
    assert_eq!(indexed(&store), 0);
    let report = store
        .ingest(vec![
            track("x", &uuid(1, 1), "2025-01-01T00:00:00Z"),
            track("y", "y1", "2025-01-01T00:00:01Z"),
            track("y", &uuid(2, 1), "2025-01-01T00:00:01Z"),
            track("y", &uuid(2, 2), "2025-01-01T00:00:02Z"),
            track("y", "y2", "2025-01-01T00:00:02Z"),
        ])
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (2, 3));
    assert_eq!(indexed(&store), 3, "the random ones");
    assert!(deferred::recorded(&store.conn).unwrap().is_none());
    let partial: Vec<(String, bool)> = pairs(
        &store.conn,
        "SELECT name, \"unique\" FROM pragma_index_list('events') WHERE partial",
    );
    assert_eq!(partial, [("events_message_id".to_string(), true)]);
}

/// A messageId that is not a random UUID (Segment's JavaScript libraries'
/// `ajs-next-<ms>-<uuid>`) stays in the log's partial unique index, found
/// through it by every lookup: a duplicate in the same transaction, later,
/// and a replacing copy.
#[test]
fn other_message_ids_stay_in_the_logs_unique_index() {
    let (_dir, _path, mut store) = deferring_store();
    let before = indexed(&store);
    let id = |ms: u64| format!("ajs-next-{ms}-3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10");
    let message = |ms: u64| track("c", &id(ms), "2025-01-01T00:00:01Z");
    let report = store
        .ingest(vec![
            message(1_733_300_000_000),
            message(1_733_300_000_001),
            message(1_733_300_000_000),
        ])
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (2, 1));
    assert_eq!(indexed(&store), before);
    let recorded = deferred::recorded(&store.conn).unwrap();
    assert_eq!(recorded.and_then(|r| r.ids_from), None);
    // An earlier copy replaces the stored one (SPEC §1).
    let earlier = track("c", &id(1_733_300_000_001), "2025-01-01T00:00:00Z");
    let report = store
        .ingest(vec![message(1_733_300_000_000), earlier])
        .unwrap();
    assert_eq!((report.duplicates, report.replaced), (1, 1));
    let plan: String = store
        .conn
        .query_row(
            concat!(
                "EXPLAIN QUERY PLAN SELECT seq FROM events WHERE message_id = 'x' \
                 AND NOT (message_id GLOB '",
                random_glob!(),
                "')"
            ),
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("events_message_id"), "{plan}");
}

/// An erasure that deletes the log's last positions makes SQLite give
/// them again: the writer then writes every row, position and
/// `message_ids` entry it keeps, and its memory starts again; any other
/// erasure leaves what it keeps.
#[test]
fn erasing_the_newest_contact_writes_everything_kept() {
    let (_dir, path, mut store) = deferring_store();
    let at = |s: u32| format!("2025-01-01T00:00:{s:02}Z");
    let one = |user: &str, n: usize| vec![track(user, &uuid(n, n), &at(n as u32))];
    // A new row is written at once, a changed one kept.
    store
        .ingest([one("a", 10), one("b", 11), one("c", 12)].concat())
        .unwrap();
    let kept = |store: &SqliteStore| {
        let recorded = deferred::recorded(&store.conn).unwrap();
        (store.kept_rows(), recorded.is_some())
    };
    store.ingest(one("a", 1)).unwrap();
    store.ingest(one("b", 3)).unwrap();
    store.ingest(one("c", 5)).unwrap();
    assert_eq!(kept(&store), (3, true));
    // b's events are in the middle of the log.
    store.erase("b").unwrap().unwrap();
    assert_eq!(kept(&store), (2, true));
    // c's are its last.
    store.erase("c").unwrap().unwrap();
    assert_eq!(kept(&store), (0, false));
    assert_eq!(indexed(&store), 2, "a's two messages");
    // The next appends take c's positions; a crash then loses nothing.
    store.ingest(one("d", 7)).unwrap();
    store.ingest(one("d", 8)).unwrap();
    assert_eq!(kept(&store), (1, true));
    let history = |store: &SqliteStore| -> Vec<(Option<Timestamp>, String)> {
        let entries = store.history("d").unwrap();
        entries.into_iter().map(|e| (e.at, e.cause)).collect()
    };
    let served = history(&store);
    assert!(!served.is_empty());
    store.crash();
    let mut store = SqliteStore::open(&path).unwrap();
    store.defer_durability(1_000).unwrap();
    assert_eq!(history(&store), served);
}

/// How many runs of log positions `log_runs` holds for `own_id`.
fn runs_of(store: &SqliteStore, own_id: &str) -> i64 {
    store
        .conn
        .query_row(
            "SELECT count(*) FROM log_runs WHERE own_id = ?1",
            [own_id],
            |r| r.get(0),
        )
        .unwrap()
}

/// Ingests one event of a contact into a store, a second later and with
/// a new messageId each call.
fn one_by_one() -> impl FnMut(&mut SqliteStore, &str) {
    let mut n = 0;
    move |store, user| {
        n += 1;
        let at = format!("2025-01-01T00:00:{n:02}Z");
        store
            .ingest(vec![track(user, &format!("m{n}"), &at)])
            .unwrap();
    }
}

/// The writer's idle moments ([`Store::write_idle`]) write what is due: the
/// kept row, the run of its contact's log positions, the random messageIds'
/// entries; then nothing is kept or recorded, and the writer's cache of
/// live states stays. Before that they only say when something will be
/// due.
#[test]
fn idle_moments_write_what_is_due() {
    let (_dir, _path, mut store) = deferring_store();
    store
        .ingest(vec![track("c", &uuid(1, 1), "2025-01-01T00:00:00Z")])
        .unwrap();
    store
        .ingest(vec![track("c", &uuid(1, 2), "2025-01-01T00:00:01Z")])
        .unwrap();
    assert_eq!(store.kept_rows(), 1);
    let wait = store.write_idle().unwrap().expect("something is kept");
    assert!(
        wait > Duration::from_secs(25) && wait <= deferred::WRITE_AFTER,
        "{wait:?}"
    );
    assert_eq!(store.kept_rows(), 1, "nothing is due yet");
    assert_eq!((runs_of(&store, "c"), indexed(&store)), (0, 0));
    store.advance_writer_clock(Duration::from_secs(31));
    let mut calls = 0;
    while let Some(wait) = store.write_idle().unwrap() {
        assert!(wait.is_zero(), "{wait:?} left after {calls} calls");
        calls += 1;
        assert!(calls < 10, "an idle writer that does not finish");
    }
    assert_eq!(store.kept_rows(), 0);
    assert_eq!((runs_of(&store, "c"), indexed(&store)), (1, 2));
    assert!(deferred::recorded(&store.conn).unwrap().is_none());
    let live = store.contact("c").unwrap().unwrap().score.score;
    let stored: f64 = store
        .conn
        .query_row("SELECT score FROM contacts WHERE id = 'c'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, live);
    // The writer's cache of live states is still good: what was written
    // is what it holds.
    store
        .ingest(vec![track("d", &uuid(2, 1), "2025-01-01T00:00:02Z")])
        .unwrap();
    assert!(store.live.as_ref().unwrap().states.held("c").is_some());
}

/// Past the WAL's limit, with frames still to copy, the idle moments hold
/// back what is due (each frame written then is one more the checkpointer
/// must copy before the WAL can start over) and say when to look again;
/// once everything is copied, or the WAL is back under its limit, they
/// write it.
#[test]
fn idle_moments_hold_back_while_the_wal_is_past_its_limit() {
    for until in ["copied", "restarted"] {
        let (_dir, _path, mut store) = deferring_store();
        let mut ingest = one_by_one();
        ingest(&mut store, "c");
        ingest(&mut store, "c");
        assert_eq!(store.kept_rows(), 1);
        store.advance_writer_clock(Duration::from_secs(31));
        let progress = Arc::clone(&store.checkpointer.as_ref().unwrap().progress);
        // Far past the limit, and no pass of this WAL yet.
        let far = i64::MAX / 2;
        progress.frames.store(far, Ordering::Release);
        for _ in 0..3 {
            assert_eq!(store.write_idle().unwrap(), Some(PAST_LIMIT_WAIT));
            assert_eq!(store.kept_rows(), 1, "{until}");
        }
        match until {
            // A pass that copied all: the next commit starts the WAL over.
            "copied" => progress.record((far, far)),
            _ => progress.frames.store(1, Ordering::Release),
        }
        let mut calls = 0;
        while let Some(wait) = store.write_idle().unwrap() {
            assert!(wait.is_zero(), "{until}: {wait:?} after {calls} calls");
            calls += 1;
            assert!(calls < 10, "an idle writer that does not finish");
        }
        assert_eq!(store.kept_rows(), 0, "{until}");
    }
}

/// Once the writer has idle moments, the transactions that requests wait
/// for leave what is due to them for half as long again, then write it
/// themselves (a writer busy without pause); a writer without idle
/// moments writes it in them as soon as it is due.
#[test]
fn acknowledged_transactions_leave_what_is_due_to_idle_moments() {
    for idles in [false, true] {
        let (_dir, _path, mut store) = deferring_store();
        let mut ingest = one_by_one();
        ingest(&mut store, "c");
        ingest(&mut store, "c");
        assert_eq!(store.kept_rows(), 1);
        if idles {
            assert!(store.write_idle().unwrap().is_some());
        }
        store.advance_writer_clock(Duration::from_secs(31));
        // A new contact: its row is written at once, not kept.
        ingest(&mut store, "d");
        match idles {
            true => {
                assert_eq!(store.kept_rows(), 1, "left to the idle moments");
                assert_eq!(runs_of(&store, "c"), 0);
            }
            false => {
                assert_eq!(store.kept_rows(), 0, "written once due");
                assert_eq!(runs_of(&store, "c"), 1);
            }
        }
        store.advance_writer_clock(Duration::from_secs(15));
        ingest(&mut store, "e");
        assert_eq!(store.kept_rows(), 0, "idles: {idles}");
        assert_eq!(runs_of(&store, "c"), 1, "idles: {idles}");
    }
}

/// The random messageIds' entries too: the idle moments write the slices
/// of a frozen generation, and the acknowledged transactions only once the
/// next generation waits for them.
#[test]
fn idle_moments_write_the_message_id_slices() {
    let (_dir, _path, mut store) = deferring_store();
    small_generations(&store, 1_000, 1);
    let at = "2025-01-01T00:00:00Z";
    store
        .ingest((1..=3).map(|n| track("c", &uuid(1, n), at)).collect())
        .unwrap();
    store.advance_writer_clock(Duration::from_secs(31));
    assert_eq!(store.write_idle().unwrap(), Some(Duration::ZERO));
    assert_eq!(indexed(&store), 1, "frozen, and one slice written");
    store.ingest(vec![track("d", &uuid(2, 1), at)]).unwrap();
    assert_eq!(indexed(&store), 1, "the slices are left to idle moments");
    // d's entry is a generation's worth now: it waits.
    small_generations(&store, 1, 1);
    store.ingest(vec![track("e", &uuid(3, 1), at)]).unwrap();
    assert_eq!(indexed(&store), 2);
}

/// A kept row that a commit replaces is dropped in the writer's next idle
/// moment, not by the commit, once the writer has idle moments (up to a
/// bound, beyond which the commit drops the overflow); before that, by
/// the commit.
#[test]
fn replaced_rows_are_dropped_in_idle_moments() {
    let (_dir, _path, mut store) = deferring_store();
    store.owner.as_mut().unwrap().graveyard = None;
    let mut ingest = one_by_one();
    let kept = |store: &SqliteStore, id: &str| store.overlay.get(id).expect("kept");
    ingest(&mut store, "c");
    ingest(&mut store, "c");
    let first = kept(&store, "c");
    ingest(&mut store, "c");
    assert_eq!(Arc::strong_count(&first), 1, "dropped by the commit");
    assert!(store.write_idle().unwrap().is_some());
    let second = kept(&store, "c");
    ingest(&mut store, "c");
    assert_eq!(Arc::strong_count(&second), 2, "left to an idle moment");
    store.write_idle().unwrap();
    assert_eq!(Arc::strong_count(&second), 1, "dropped by it");
    // Past the bound, the commit drops the overflow.
    store.owner.as_mut().unwrap().unburied_max = 1;
    let (c, d) = (kept(&store, "c"), {
        ingest(&mut store, "d");
        ingest(&mut store, "d");
        kept(&store, "d")
    });
    ingest(&mut store, "c");
    ingest(&mut store, "d");
    let left = [&c, &d].map(Arc::strong_count);
    assert_eq!(
        left.iter().sum::<usize>(),
        3,
        "{left:?}: one left, one dropped"
    );
}

/// With a graveyard (the writer's default), replaced rows are dropped on
/// its thread, where without one they wait for an idle moment (above).
#[test]
fn replaced_rows_are_dropped_by_the_graveyard() {
    let (_dir, _path, mut store) = deferring_store();
    assert!(store.owner.as_ref().unwrap().graveyard.is_some());
    let mut ingest = one_by_one();
    // A new row is written at once; the next change to it is kept.
    ingest(&mut store, "c");
    ingest(&mut store, "c");
    // From now on, the writer leaves what it replaces to idle moments.
    assert!(store.write_idle().unwrap().is_some());
    let first = store.overlay.get("c").expect("kept");
    ingest(&mut store, "c");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&first) > 1 {
        assert!(std::time::Instant::now() < deadline, "never dropped");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// With a read-ahead set before the first ingest, the checkpointer
/// extends the database file a chunk (four times the read-ahead) at a
/// time; the setting is refused once ingest has started.
#[test]
fn a_store_reading_ahead_grows_its_file_by_chunks() {
    let (_dir, path, mut store) = deferring_store();
    store.set_grow_ahead(1 << 20).unwrap();
    let messages = (0..200)
        .map(|i| track(&format!("u{i}"), &format!("m{i}"), "2026-01-01T00:00:00Z"))
        .collect();
    store.ingest(messages).unwrap();
    let chunk = 4u64 << 20;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        store.ingest(vec![]).unwrap(); // wakes the checkpointer
        let size = std::fs::metadata(&path).unwrap().len();
        if size > 0 && size.is_multiple_of(chunk) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the file stayed at {size} bytes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = store.set_grow_ahead(2 << 20).unwrap_err().to_string();
    assert!(refused.contains("before the first ingest"), "{refused}");
}

/// The log's bodies are written without the messageId and timestamp their
/// row's columns hold, and read back whole: through a contact's log, a
/// replacing earlier copy and a row written whole by an earlier version.
#[test]
fn the_log_keeps_compact_bodies_and_reads_them_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let sent = [
        track(
            "u",
            "ajs-next-1733300000000-3f6c1e2a",
            "2025-01-01T00:00:00.5Z",
        ),
        track("u", "m\"2", "2025-01-02T00:00:00Z"),
    ];
    let wholes: Vec<String> = sent.iter().map(|m| m.message.stored_json()).collect();
    store.ingest(sent.to_vec()).unwrap();
    let body = |store: &SqliteStore, seq: i64| -> String {
        store
            .conn
            .query_row("SELECT body FROM events WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let bodies = [body(&store, 1), body(&store, 2)];
    assert_eq!(
        bodies,
        [r#"{"type":"track","event":"Form Submitted","userId":"u","properties":{}}"#; 2]
    );
    let read = |store: &SqliteStore| -> Vec<String> {
        let log = store.contact_messages("u").unwrap().unwrap();
        log.messages.iter().map(|m| m.stored_json()).collect()
    };
    assert_eq!(read(&store), wholes);
    // An earlier copy replaces the stored one, compact too.
    let earlier = track("u", "m\"2", "2024-12-31T00:00:00Z");
    let report = store.ingest(vec![earlier.clone()]).unwrap();
    assert_eq!(report.replaced, 1);
    let replaced = body(&store, 2);
    assert!(!replaced.contains("timestamp"), "{replaced}");
    assert_eq!(
        read(&store),
        [earlier.message.stored_json(), wholes[0].clone()]
    );
    // A row written whole (before compact bodies) reads as it is.
    store
        .conn
        .execute("UPDATE events SET body = ?1 WHERE seq = 1", [&wholes[0]])
        .unwrap();
    let other = SqliteStore::open(dir.path().join("s.db")).unwrap();
    assert_eq!(
        read(&other),
        [earlier.message.stored_json(), wholes[0].clone()]
    );
}

/// The ledger's `old` and `new` are written as arrays (V14) and read back
/// as the fields they were made from; entries written as objects before
/// read too (`histories_survive_the_move_to_runs_of_positions`).
#[test]
fn the_ledger_writes_its_fields_as_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let source = include_str!("../../../../examples/b2b.toml");
    let version = store.add_model("b2b.toml", source).unwrap().version;
    store.activate(version, &mut |_, _| {}).unwrap();
    store
        .ingest(vec![
            track("u", "m1", "2025-01-01T00:00:00Z"),
            track("u", "m2", "2025-01-02T00:00:00Z"),
        ])
        .unwrap();
    let texts: Vec<(Option<String>, String)> =
        pairs(&store.conn, "SELECT old, new FROM ledger ORDER BY seq");
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0].0, None);
    assert_eq!(texts[1].0.as_ref(), Some(&texts[0].1));
    let history = store.history("u").unwrap();
    let score = store.contact("u").unwrap().unwrap().score;
    let last = history.last().unwrap().new.clone().unwrap();
    assert_eq!((last.score, last.status), (score.score, score.status));
    for (entry, (_, new)) in history.iter().zip(&texts) {
        let f = entry.new.as_ref().unwrap();
        assert_eq!(
            new,
            &serde_json::to_string(&(f.score, &f.tier, &f.grade, &f.stage, f.status)).unwrap()
        );
    }
}

/// The writer's filter of random messageIds forgets what it knew when
/// another connection commits, even while the writer keeps nothing in
/// memory (no record to tell it): ids that connection indexed are
/// duplicates for the writer too.
#[test]
fn ids_another_connection_indexed_are_duplicates_for_the_writer() {
    let (_dir, path, mut store) = deferring_store();
    let at = "2025-01-01T00:00:00Z";
    store.ingest(vec![track("c", &uuid(7, 1), at)]).unwrap();
    store.write_kept_rows().unwrap();
    // A duplicate: the filter is built, nothing is kept.
    let report = store.ingest(vec![track("c", &uuid(7, 1), at)]).unwrap();
    assert_eq!(report.duplicates, 1);
    assert!(deferred::recorded(&store.conn).unwrap().is_none());
    let mut other = SqliteStore::open(&path).unwrap();
    other.ingest(vec![track("d", &uuid(7, 2), at)]).unwrap();
    let report = store
        .ingest(vec![
            track("c", &uuid(7, 1), at),
            track("d", &uuid(7, 2), at),
            track("d", &uuid(7, 3), at),
        ])
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 2));
}

/// A commit by another connection that writes no event (an outcome) drops
/// the writer's filter while the writer keeps `message_ids` entries in
/// memory: the filter built again holds them, so their ids stay
/// duplicates.
#[test]
fn the_filter_built_again_holds_the_entries_the_writer_keeps() {
    let (_dir, path, mut store) = deferring_store();
    let at = "2025-01-01T00:00:00Z";
    store.ingest(vec![track("c", &uuid(8, 1), at)]).unwrap();
    // The filter is built at the first lookup; the entry stays in memory.
    assert!(deferred::recorded(&store.conn).unwrap().is_some());
    let mut other = SqliteStore::open(&path).unwrap();
    other.add_outcomes(&[won("c")]).unwrap();
    let report = store
        .ingest(vec![
            track("c", &uuid(8, 1), at),
            track("c", &uuid(8, 2), at),
        ])
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
}

/// A sale won by `contact`: a write that appends no event.
fn won(contact: &str) -> crate::Outcome {
    crate::Outcome {
        contact_id: contact.into(),
        outcome: "won".into(),
        value: None,
        at: Timestamp::from_seconds(1_735_689_700),
    }
}

/// A point read leaves its connection out of any transaction: after an
/// answer, after a statement in it failed, and when its end fails (here a
/// write in it meets a constraint after a deferred foreign key: COMMIT
/// refuses, so it is rolled back). Another connection's commit is then
/// seen by the next read.
#[test]
fn a_snapshot_ends_its_transaction_whatever_happened_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let source = include_str!("../../../../examples/b2b.toml");
    let version = store.add_model("b2b.toml", source).unwrap().version;
    store.activate(version, &mut |_, _| {}).unwrap();
    store
        .ingest(vec![track("c", "c1", "2025-01-01T00:00:00Z")])
        .unwrap();
    let t = Timestamp::parse("2025-02-01T00:00:00Z").unwrap();
    assert!(store.contact_at("c", t).unwrap().is_some());
    assert!(store.conn.is_autocommit());
    {
        let snapshot = Snapshot::begin(&store.conn).unwrap();
        assert!(!snapshot.is_autocommit());
        assert!(snapshot.execute("SELECT * FROM no_such_table", []).is_err());
    }
    assert!(store.conn.is_autocommit());
    store
        .conn
        .execute_batch(
            "CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE child (parent INTEGER REFERENCES parent (id)
                 DEFERRABLE INITIALLY DEFERRED);
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
    {
        let snapshot = Snapshot::begin(&store.conn).unwrap();
        snapshot
            .execute("INSERT INTO child VALUES (7)", [])
            .unwrap();
    }
    assert!(store.conn.is_autocommit(), "rolled back");
    let rows = count(&store.conn, "SELECT count(*) FROM child", []).unwrap();
    assert_eq!(rows, 0);
    let mut other = SqliteStore::open(&path).unwrap();
    other
        .ingest(vec![track("d", "d1", "2025-01-01T00:00:01Z")])
        .unwrap();
    assert!(store.contact_at("d", t).unwrap().is_some());
}

/// A connection readied for the server's reads maps the database as the
/// writer does; another connection keeps SQLite's defaults.
#[test]
fn read_connections_map_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut reader = SqliteStore::open(&path).unwrap();
    let other = SqliteStore::open(&path).unwrap();
    reader.serve_reads().unwrap();
    assert_eq!(pragma(&reader, "mmap_size"), SERVER_MMAP_BYTES);
    assert_eq!(pragma(&other, "mmap_size"), 0);
}
