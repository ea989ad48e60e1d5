// Package revoke turns lifecycle events into revocations: the Planner fans an
// Event out into one Job per interested Target, and one Executor per Target
// runs its Driver with per-target concurrency, retries through JetStream
// redelivery and dead-letters what cannot succeed. Drivers live in
// sub-packages (gtr, httpcall, …) and only build and classify requests.
package revoke
