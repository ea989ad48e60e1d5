-- Who a record is about is indexed once per event, not once per record
-- (docs/decisions/0019). A row says: the record at seq is the first of its
-- event (event_id) to carry this identifier — key is 'e:' and the lowercased
-- email, 'l:' and the lowercased login, or 'i:' and the IdP id. A record
-- that belongs to no event (event_id '') has rows of its own. A query for a
-- subject reads the events these rows name, then their records through
-- records_event. Not part of the chain (like duplicate_of): the index
-- recomputes it, and verify holds it against the rows both ways.
CREATE TABLE subject_keys (
    key       TEXT    NOT NULL,
    event_id  TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (key, event_id, seq)
) WITHOUT ROWID;

INSERT INTO subject_keys (key, event_id, seq)
    SELECT k, event_id, min(seq) FROM (
        SELECT 'e:' || subject_email AS k, event_id, seq FROM records WHERE subject_email <> ''
        UNION ALL SELECT 'l:' || subject_login, event_id, seq FROM records WHERE subject_login <> ''
        UNION ALL SELECT 'i:' || subject_id, event_id, seq FROM records WHERE subject_id <> ''
    ) WHERE event_id <> '' GROUP BY k, event_id;
INSERT INTO subject_keys (key, event_id, seq)
    SELECT 'e:' || subject_email, '', seq FROM records WHERE event_id = '' AND subject_email <> ''
    UNION ALL SELECT 'l:' || subject_login, '', seq FROM records WHERE event_id = '' AND subject_login <> ''
    UNION ALL SELECT 'i:' || subject_id, '', seq FROM records WHERE event_id = '' AND subject_id <> '';

DROP INDEX records_subject_email;
DROP INDEX records_subject_login;
DROP INDEX records_subject_id;
