-- Triggers (SPEC §3.3): see the SQLite migration for the commentary.
ALTER TABLE contacts ADD COLUMN triggers BYTEA;
ALTER TABLE contacts ADD COLUMN due BIGINT;
ALTER TABLE contacts_next ADD COLUMN triggers BYTEA;
ALTER TABLE contacts_next ADD COLUMN due BIGINT;
CREATE INDEX contacts_due ON contacts (due) WHERE due IS NOT NULL;

CREATE TABLE firings (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key           TEXT    NOT NULL UNIQUE,
    trigger_id    TEXT    NOT NULL COLLATE "C",
    contact       TEXT    NOT NULL COLLATE "C",
    at            BIGINT  NOT NULL,
    recorded_at   BIGINT  NOT NULL,
    late          BOOLEAN NOT NULL,
    model_version INTEGER NOT NULL,
    score         TEXT    NOT NULL,
    explanation   TEXT    NOT NULL
);
CREATE INDEX firings_contact ON firings (contact, trigger_id);
CREATE INDEX firings_trigger ON firings (trigger_id, seq);

CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    firing       BIGINT  NOT NULL,
    key          TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt BIGINT  NOT NULL,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX outbox_ready ON outbox (status, next_attempt);

CREATE TABLE campaign_members (
    campaign    TEXT   NOT NULL COLLATE "C",
    firing      BIGINT NOT NULL,
    contact     TEXT   NOT NULL COLLATE "C",
    at          BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    PRIMARY KEY (campaign, firing)
);
CREATE INDEX campaign_members_since ON campaign_members (campaign, enrolled_at);
