-- leadscore store, version 1 (PostgreSQL). Same tables as the SQLite
-- schema; see docs/storage.md.

CREATE TABLE events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT   NOT NULL UNIQUE,
    own_id     TEXT   NOT NULL,
    ts         BIGINT NOT NULL,
    body       TEXT   NOT NULL
);
CREATE INDEX events_own_id ON events (own_id);

CREATE TABLE links (
    from_id    TEXT   NOT NULL,
    ts         BIGINT NOT NULL,
    message_id TEXT   NOT NULL,
    to_id      TEXT   NOT NULL,
    PRIMARY KEY (from_id, ts, message_id)
);
CREATE INDEX links_message_id ON links (message_id);

-- Ids compare bytewise (COLLATE "C"), as in SQLite and in `leadscore score`.
CREATE TABLE identities (
    id      TEXT COLLATE "C" PRIMARY KEY,
    contact TEXT COLLATE "C" NOT NULL
);
CREATE INDEX identities_contact ON identities (contact);

CREATE TABLE contacts (
    id            TEXT COLLATE "C" PRIMARY KEY,
    model_version INTEGER          NOT NULL,
    state         BYTEA            NOT NULL,
    traits        TEXT             NOT NULL,
    company       TEXT             NOT NULL,
    last_ts       BIGINT,
    score         DOUBLE PRECISION NOT NULL,
    raw           DOUBLE PRECISION NOT NULL,
    fit           DOUBLE PRECISION NOT NULL,
    engagement    DOUBLE PRECISION NOT NULL,
    tier          TEXT             NOT NULL,
    grade         TEXT             NOT NULL,
    stage         TEXT             NOT NULL,
    status        TEXT             NOT NULL,
    reasons       TEXT             NOT NULL
);

CREATE TABLE contacts_next (LIKE contacts INCLUDING ALL);

CREATE TABLE ledger (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact       TEXT    NOT NULL,
    at            BIGINT,
    recorded_at   BIGINT  NOT NULL,
    model_version INTEGER NOT NULL,
    old           TEXT,
    new           TEXT,
    cause         TEXT    NOT NULL
);
CREATE INDEX ledger_contact ON ledger (contact, seq);

CREATE TABLE models (
    version  INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name     TEXT    NOT NULL,
    hash     TEXT    NOT NULL UNIQUE,
    source   TEXT    NOT NULL,
    added_at BIGINT  NOT NULL
);

CREATE TABLE activations (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version INTEGER NOT NULL,
    at      BIGINT  NOT NULL
);

CREATE TABLE activation_job (
    version    INTEGER PRIMARY KEY,
    cursor     TEXT,
    started_at BIGINT  NOT NULL
);

CREATE TABLE tombstones (
    id_hash   TEXT   PRIMARY KEY,
    erased_at BIGINT NOT NULL
);
