-- A contact's history is found through runs of ledger positions instead of
-- an index on `ledger (contact, seq)`: that index took one random page of
-- a B-tree as large as the history for every entry (one per event), the
-- most expensive write of an ingest in steady state (docs/performance.md,
-- session 21). The positions of a contact's latest entries are kept in its
-- live row (`history`, a page written anyway) and moved to `ledger_runs`
-- as one row when they pass a few hundred bytes, when the row is deleted
-- and when a model is activated.
ALTER TABLE contacts ADD COLUMN history TEXT;      -- `seq,seq,…` not yet in a run
ALTER TABLE contacts_next ADD COLUMN history TEXT; -- always NULL (same columns)
CREATE TABLE ledger_runs (
    contact   TEXT    NOT NULL,
    first_seq INTEGER NOT NULL,
    seqs      TEXT    NOT NULL,                    -- `seq,seq,…`, increasing
    PRIMARY KEY (contact, first_seq)
) WITHOUT ROWID;
INSERT INTO ledger_runs (contact, first_seq, seqs)
    SELECT contact, min(seq), group_concat(seq, ',')
    FROM (SELECT contact, seq FROM ledger ORDER BY contact, seq)
    GROUP BY contact;
DROP INDEX ledger_contact;
