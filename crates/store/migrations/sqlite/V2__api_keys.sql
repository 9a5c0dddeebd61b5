-- API keys for the HTTP server: only a SHA-256 hash of each key is kept.
CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    scope      TEXT    NOT NULL,      -- ingest | read | admin
    label      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
