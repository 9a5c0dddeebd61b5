-- The event log by own id without an index (docs/performance.md, session
-- 29): `events_own_id` took one random page of a B-tree as large as the
-- log for every event, 15 % of the server writer's instructions and half
-- of its checkpoints' work. Each own id's event positions are found in
-- `log_runs` instead: a run holds the positions of one own id's events
-- appended over a while (the server's writer keeps them in memory some
-- seconds and writes one run per own id; an import one per own id and
-- batch). A run may name an event whose message was since replaced by a
-- copy with another own id: readers keep only events whose own id
-- matches. Positions at or past `deferred_rows.log_from` may be only in
-- the writer's memory; after a crash the next writer puts them into runs
-- from the log.
ALTER TABLE deferred_rows ADD COLUMN log_from INTEGER; -- NULL: nothing left in memory
CREATE TABLE log_runs (
    own_id    TEXT    NOT NULL,
    first_seq INTEGER NOT NULL,
    seqs      TEXT    NOT NULL,                        -- `seq,seq,…`, increasing
    PRIMARY KEY (own_id, first_seq)
) WITHOUT ROWID;
INSERT INTO log_runs (own_id, first_seq, seqs)
    SELECT own_id, min(seq), group_concat(seq, ',')
    FROM (SELECT own_id, seq FROM events ORDER BY own_id, seq)
    GROUP BY own_id;
DROP INDEX events_own_id;
