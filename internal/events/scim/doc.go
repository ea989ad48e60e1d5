// Package scim is a SCIM 2.0 service provider (RFC 7643/7644) for the users
// an IdP provisions to us — Okta, Entra ID, any SCIM client — so that their
// deprovisioning becomes an Event: active true→false (PATCH in Okta's and
// Entra's dialects, or PUT) and DELETE are deprovisioned, false→true is
// reactivated. Users live in a NATS KV bucket, so any replica serves SCIM.
// The event is durable before the IdP gets its answer, and its ID derives
// from the user's version, so an IdP retry after a failure neither loses
// nor doubles the transition.
package scim
