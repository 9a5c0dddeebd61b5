-- Live rows whose updates the server's writer keeps in memory (V10).
--
-- The server's writer may leave updates of live rows in memory and write
-- them later, paced, instead of in every acknowledged transaction (the
-- event log, identities, ledger and firings are still written there).
-- While it holds any, this table has one row: the epoch of that writer's
-- memory (readers use the memory only while it matches) and where the log
-- and the ledger stood when its oldest unwritten row was first left in
-- memory. After a crash, the store re-derives from the log every contact
-- with an event at or past `events_from`, and gives the live rows the
-- positions of their ledger entries from `ledger_from` on
-- (docs/storage.md, "Live rows written later").
CREATE TABLE deferred_rows (
    only        INTEGER PRIMARY KEY CHECK (only = 1),
    epoch       INTEGER NOT NULL,
    events_from INTEGER NOT NULL,
    ledger_from INTEGER NOT NULL
);
