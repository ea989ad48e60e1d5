// Package bus is lifecycle-worker's only contact with NATS: it runs the
// embedded nats-server or connects to a cluster, provisions the streams,
// durable pull consumers and KV buckets (idempotently, with the jetstream
// API), publishes with deduplication IDs, and hands Watermill subscribers
// that bind to those consumers and ack only what was handled. See
// docs/decisions/0002.
package bus
