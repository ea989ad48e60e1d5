// Package audit is the evidence trail: every step of every signal becomes a
// Record on the AUDIT stream, and the Indexer projects that stream, in
// stream order, into a hash-chained SQLite index that the query API and the
// CLI read. The stream is the system of record; the index can be rebuilt.
package audit
