-- Sales outcomes (converted, won, lost, disqualified, …) for evaluation.
CREATE TABLE outcomes (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id  TEXT             NOT NULL,
    outcome     TEXT             NOT NULL,
    value       DOUBLE PRECISION,
    at          BIGINT           NOT NULL,
    recorded_at BIGINT           NOT NULL
);
CREATE INDEX outcomes_contact ON outcomes (contact_id);
