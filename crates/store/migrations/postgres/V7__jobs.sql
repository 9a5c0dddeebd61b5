-- Background jobs (model activations started through the API), so that
-- their state survives a restart and any process over the same database
-- can answer for them.
CREATE TABLE jobs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT    NOT NULL,
    version     INTEGER,
    state       TEXT    NOT NULL,
    done        BIGINT  NOT NULL,
    total       BIGINT,
    report      TEXT,
    error       TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
