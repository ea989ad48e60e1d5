-- The audit index: one row per record of the AUDIT stream, keyed by its
-- stream sequence. `body` is the canonical JSON the hash chain covers; the
-- other columns are copies of its fields, for queries.
CREATE TABLE records (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL,
    time_ms        INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    event_id       TEXT    NOT NULL DEFAULT '',
    source         TEXT    NOT NULL DEFAULT '',
    kind           TEXT    NOT NULL DEFAULT '',
    subject_id     TEXT    NOT NULL DEFAULT '',
    subject_login  TEXT    NOT NULL DEFAULT '',
    subject_email  TEXT    NOT NULL DEFAULT '',
    target         TEXT    NOT NULL DEFAULT '',
    outcome        TEXT    NOT NULL DEFAULT '',
    indexed_ms     INTEGER NOT NULL,  -- when this index made the record queryable (not chained)
    body           BLOB    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL
);

-- Each secondary index costs write throughput (reference: ~3x per random
-- key), so only the questions people ask: who, which event, which target.
-- Not partial: SQLite cannot use a partial index (WHERE col <> '') for a
-- bound parameter, and a subject query would scan the table.
CREATE INDEX records_subject_email ON records (subject_email);
CREATE INDEX records_subject_login ON records (subject_login);
CREATE INDEX records_subject_id    ON records (subject_id);
CREATE INDEX records_event         ON records (event_id);
CREATE INDEX records_target        ON records (target, outcome, time_ms);
CREATE INDEX records_time          ON records (time_ms);
CREATE INDEX records_type          ON records (type, kind, time_ms);
