// Package server is lifecycle-worker's HTTP face: it mounts the intake
// handlers, the audit API, the JWKS and the health endpoints on one mux,
// with timeouts on every connection and a panic guard on every request.
package server
