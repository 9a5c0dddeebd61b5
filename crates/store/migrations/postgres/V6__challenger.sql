-- A model version attached as the challenger of the active one (one row at
-- most): scored in shadow for champion/challenger comparisons.
CREATE TABLE challenger (
    version     INTEGER NOT NULL,
    attached_at BIGINT  NOT NULL
);
