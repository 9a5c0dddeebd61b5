-- leadscore store, version 1. See docs/storage.md.

-- The event log: append-only (a duplicate messageId is ignored, unless the
-- new copy is the one SPEC §1 keeps, which then replaces the old row).
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL UNIQUE,
    own_id     TEXT    NOT NULL,      -- userId, else anonymousId
    ts         INTEGER NOT NULL,      -- nanoseconds since the epoch
    body       TEXT    NOT NULL       -- the normalised message as JSON
);
CREATE INDEX events_own_id ON events (own_id);

-- Every linking message (identify/track with both ids, alias); each id
-- follows the earliest one starting from it.
CREATE TABLE links (
    from_id    TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    message_id TEXT    NOT NULL,
    to_id      TEXT    NOT NULL,
    PRIMARY KEY (from_id, ts, message_id)
) WITHOUT ROWID;
CREATE INDEX links_message_id ON links (message_id);

-- The canonical contact of every id seen.
CREATE TABLE identities (
    id      TEXT PRIMARY KEY,
    contact TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX identities_contact ON identities (contact);

-- Live state and score of each contact under the active model, as of its
-- latest event.
CREATE TABLE contacts (
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
    reasons       TEXT    NOT NULL    -- JSON array
) WITHOUT ROWID;

-- The same rows for a model being activated (filled, then swapped in).
CREATE TABLE contacts_next (
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
    reasons       TEXT    NOT NULL
) WITHOUT ROWID;

-- Score history: one row per change of score, tier, grade, stage or status.
CREATE TABLE ledger (
    seq           INTEGER PRIMARY KEY,
    contact       TEXT    NOT NULL,
    at            INTEGER,            -- the score's time (latest event)
    recorded_at   INTEGER NOT NULL,
    model_version INTEGER NOT NULL,
    old           TEXT,               -- JSON {score,tier,grade,stage,status}, NULL if new
    new           TEXT,               -- same, NULL if the contact was merged or erased
    cause         TEXT    NOT NULL
);
CREATE INDEX ledger_contact ON ledger (contact, seq);

CREATE TABLE models (
    version  INTEGER PRIMARY KEY,
    name     TEXT    NOT NULL,
    hash     TEXT    NOT NULL UNIQUE,
    source   TEXT    NOT NULL,
    added_at INTEGER NOT NULL
);

CREATE TABLE activations (
    seq     INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    at      INTEGER NOT NULL
);

-- A model activation in progress: contacts up to `cursor` are in contacts_next.
CREATE TABLE activation_job (
    version    INTEGER PRIMARY KEY,
    cursor     TEXT,
    started_at INTEGER NOT NULL
);

-- Hashes of erased ids: a replayed old event must not resurrect them.
CREATE TABLE tombstones (
    id_hash   TEXT    PRIMARY KEY,
    erased_at INTEGER NOT NULL
) WITHOUT ROWID;
