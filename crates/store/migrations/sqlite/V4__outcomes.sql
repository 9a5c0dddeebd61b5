-- Sales outcomes (converted, won, lost, disqualified, …) for evaluation.
CREATE TABLE outcomes (
    seq         INTEGER PRIMARY KEY,
    contact_id  TEXT    NOT NULL,      -- as given (any of the contact's ids)
    outcome     TEXT    NOT NULL,
    value       REAL,
    at          INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX outcomes_contact ON outcomes (contact_id);
