-- Signed checkpoints of the hash chain: (seq, hash of the record at seq,
-- time) signed with the Ed25519 checkpoint key. The same lines go to the
-- checkpoint file, outside this database, so that a cut-off tail shows.
CREATE TABLE checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB    NOT NULL,
    time_ms    INTEGER NOT NULL,
    kid        TEXT    NOT NULL,
    signature  BLOB    NOT NULL
);
