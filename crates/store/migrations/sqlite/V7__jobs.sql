-- Background jobs (model activations started through the API), so that
-- their state survives a restart and any process over the same database
-- can answer for them.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    version     INTEGER,
    state       TEXT    NOT NULL,     -- running, done, failed
    done        INTEGER NOT NULL,
    total       INTEGER,
    report      TEXT,                 -- JSON, when done
    error       TEXT,                 -- when failed
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
