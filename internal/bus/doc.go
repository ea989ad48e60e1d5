// Package bus is lifecycle-worker's only contact with NATS: it runs the
// embedded nats-server or connects to a cluster, provisions the streams and
// durable consumers (idempotently, with the jetstream API), publishes with
// deduplication IDs and hands Watermill subscribers that are bound to those
// pre-created consumers and ack manually. See docs/decisions/0002.
package bus
