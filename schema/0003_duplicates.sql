-- A record the AUDIT stream holds twice (its writer ran again after a crash
-- or a failed step: the stream keeps every copy, see decision 0014) is
-- indexed twice, so that the chain covers every message, and the later row
-- names the first: duplicate_of is the seq of the first row with the same
-- event and record ID (0: the first, or the only one). Queries read only
-- first rows; verify checks the column against the rows it names. It is not
-- part of the chain (like indexed_ms): the index can recompute it.
ALTER TABLE records ADD COLUMN duplicate_of INTEGER NOT NULL DEFAULT 0;
