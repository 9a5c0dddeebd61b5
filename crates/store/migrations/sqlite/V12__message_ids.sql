-- Random messageIds out of the log's unique index (docs/performance.md,
-- session 32): with random UUID messageIds (RudderStack's SDKs, Segment's
-- mobile, Python and Java libraries) every event inserted into a random
-- leaf of an index as large as the log, one WAL page per event, and the
-- server's writer saturated near 40k events/s. The log's unique index on
-- message_id now holds every other messageId (a partial index: those land
-- beside recent ones, as before), and random UUIDs (version 4, the GLOB
-- pattern below, also in crates/store/src/sqlite/mod.rs) are indexed in
-- `message_ids`: the xxh3-64 hash of the id with its position (a lookup
-- keeps the positions whose stored message_id is the one asked for),
-- written by imports in key order per batch and by the server's writer in
-- sorted generations some seconds later (crates/store/src/sqlite/msgids.rs).
-- Positions at or past `deferred_rows.ids_from` may be only in the
-- writer's memory; after a crash, and here for the whole log, the next
-- writer indexes them from the log.
CREATE TABLE events_v12 (
    seq        INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL,
    own_id     TEXT    NOT NULL,      -- userId, else anonymousId
    ts         INTEGER NOT NULL,      -- nanoseconds since the epoch
    body       TEXT    NOT NULL       -- the normalised message as JSON
);
INSERT INTO events_v12 (seq, message_id, own_id, ts, body)
    SELECT seq, message_id, own_id, ts, body FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v12 RENAME TO events;
CREATE UNIQUE INDEX events_message_id ON events (message_id)
    WHERE NOT (message_id GLOB '[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-4[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]');

CREATE TABLE message_ids (
    hash INTEGER NOT NULL,                   -- xxh3-64 of message_id, signed
    seq  INTEGER NOT NULL,
    PRIMARY KEY (hash, seq)
) WITHOUT ROWID;

ALTER TABLE deferred_rows ADD COLUMN ids_from INTEGER; -- NULL: every one indexed
-- The random ids of the log are indexed by the next writer (the hash is
-- computed in Rust): recorded as left by a writer of no epoch.
INSERT INTO deferred_rows (only, epoch, events_from, ledger_from)
    SELECT 1, 0, 9223372036854775807, 9223372036854775807
    WHERE EXISTS (SELECT 1 FROM events WHERE message_id GLOB '[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-4[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]')
    ON CONFLICT (only) DO NOTHING;
UPDATE deferred_rows SET ids_from = (SELECT min(seq) FROM events WHERE message_id GLOB '[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-4[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]');
