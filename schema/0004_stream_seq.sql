-- An AUDIT message may carry several records (docs/decisions/0017): seq is
-- the record's place in the trail, stream_seq the AUDIT message it came in,
-- so that the indexer resumes after the last message it indexed. Rows
-- written before have 0 here: each was its own message, at its seq. Not
-- part of the chain (like indexed_ms); verify checks that it only ever
-- steps by one.
ALTER TABLE records ADD COLUMN stream_seq INTEGER NOT NULL DEFAULT 0;
