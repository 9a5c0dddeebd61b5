-- Live rows in ordinary (rowid) tables instead of WITHOUT ROWID ones.
--
-- A WITHOUT ROWID table is a B-tree whose interior pages hold whole rows
-- as keys: with rows of 400 bytes and more, about eight to a page, so a
-- lookup by id walked a deep tree and a grown row moved whole rows between
-- interior pages. A rowid table keeps rows in its leaves only; the id is
-- found through a small index (id → rowid) and the row through a tree of
-- integers (docs/performance.md, session 23: 7.4 % fewer instructions per
-- ingested message). The columns, their order and every statement on them
-- stay the same.
CREATE TABLE contacts_v9 (
    id            TEXT    PRIMARY KEY,
    model_version INTEGER NOT NULL,
    state         BLOB    NOT NULL,   -- core's versioned snapshot
    traits        TEXT    NOT NULL,   -- JSON object
    company       TEXT    NOT NULL,   -- JSON object
    last_ts       INTEGER,
    score         REAL    NOT NULL,
    raw           REAL    NOT NULL,
    fit           REAL    NOT NULL,
    engagement    REAL    NOT NULL,
    tier          TEXT    NOT NULL,
    grade         TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    reasons       TEXT    NOT NULL,   -- JSON array
    triggers      BLOB,               -- the triggers' state (V5)
    due           INTEGER,            -- next due time (V5)
    history       TEXT                -- `seq,seq,…` not yet in a run (V8)
);
INSERT INTO contacts_v9 SELECT * FROM contacts;
DROP TABLE contacts;
ALTER TABLE contacts_v9 RENAME TO contacts;
CREATE INDEX contacts_score ON contacts (score, id);
CREATE INDEX contacts_due ON contacts (due) WHERE due IS NOT NULL;

CREATE TABLE contacts_next_v9 (
    id            TEXT    PRIMARY KEY,
    model_version INTEGER NOT NULL,
    state         BLOB    NOT NULL,
    traits        TEXT    NOT NULL,
    company       TEXT    NOT NULL,
    last_ts       INTEGER,
    score         REAL    NOT NULL,
    raw           REAL    NOT NULL,
    fit           REAL    NOT NULL,
    engagement    REAL    NOT NULL,
    tier          TEXT    NOT NULL,
    grade         TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    reasons       TEXT    NOT NULL,
    triggers      BLOB,
    due           INTEGER,
    history       TEXT
);
INSERT INTO contacts_next_v9 SELECT * FROM contacts_next;
DROP TABLE contacts_next;
ALTER TABLE contacts_next_v9 RENAME TO contacts_next;
