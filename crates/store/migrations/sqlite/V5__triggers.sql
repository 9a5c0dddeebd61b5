-- Triggers (SPEC §3.3): each contact's trigger state and next due time,
-- the firings, the outbox their actions are delivered from, and the
-- campaign lists kept by leadscore.
ALTER TABLE contacts ADD COLUMN triggers BLOB;
ALTER TABLE contacts ADD COLUMN due INTEGER;     -- next time-based evaluation point
ALTER TABLE contacts_next ADD COLUMN triggers BLOB;
ALTER TABLE contacts_next ADD COLUMN due INTEGER;
CREATE INDEX contacts_due ON contacts (due) WHERE due IS NOT NULL;

CREATE TABLE firings (
    seq           INTEGER PRIMARY KEY,
    key           TEXT    NOT NULL UNIQUE,   -- idempotency key: hash(trigger, contact, at)
    trigger_id    TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    at            INTEGER NOT NULL,          -- the evaluation point
    recorded_at   INTEGER NOT NULL,
    late          INTEGER NOT NULL,          -- 0/1
    model_version INTEGER NOT NULL,
    score         TEXT    NOT NULL,          -- JSON score snapshot
    explanation   TEXT    NOT NULL           -- JSON
);
CREATE INDEX firings_contact ON firings (contact, trigger_id);
CREATE INDEX firings_trigger ON firings (trigger_id, seq);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    firing       INTEGER NOT NULL,
    key          TEXT    NOT NULL,           -- the firing's key and the action index
    destination  TEXT    NOT NULL,           -- `webhook URL`, `crm hubspot`, `log`
    payload      TEXT    NOT NULL,           -- JSON: firing and action
    status       TEXT    NOT NULL,           -- pending, delivered, dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,           -- not before (also the lease of a claimed row)
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX outbox_ready ON outbox (status, next_attempt);

CREATE TABLE campaign_members (
    campaign    TEXT    NOT NULL,
    firing      INTEGER NOT NULL,
    contact     TEXT    NOT NULL,
    at          INTEGER NOT NULL,            -- the firing time
    enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (campaign, firing)
);
CREATE INDEX campaign_members_since ON campaign_members (campaign, enrolled_at);
