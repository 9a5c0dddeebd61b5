-- API keys for the HTTP server: only a SHA-256 hash of each key is kept.
CREATE TABLE api_keys (
    id         INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    scope      TEXT    NOT NULL,
    label      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
