// Package oktahook understands Okta Event Hooks: it answers the one-time
// verification GET, authenticates deliveries by a shared header secret
// (constant time, several secrets for rotation), maps each data.events[]
// LogEvent to an Event, and answers 200 only once every Event is durable,
// 503 otherwise — Okta retries once, and never after a 4xx.
package oktahook
