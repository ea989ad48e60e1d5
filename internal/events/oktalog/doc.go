// Package oktalog is the backstop for missed Okta Event Hooks: it polls the
// Okta System Log (GET /api/v1/logs, internal/oktaapi) for the mapped event types, following
// Okta's cursor, keeps that cursor and a lease (one poller per cluster) in
// NATS KV, and publishes the same okta:<uuid> events a hook would, so that
// whichever path arrives second is dropped as a duplicate. It also keeps an
// inventory of ID-JAG grants: which MCP authorization servers each user was
// vouched for, and when.
package oktalog
