// Package keys holds lifecycle-worker's signing key: it is generated into the
// data dir on first start (or loaded from a configured file), published as a
// JWKS, and used to mint every JWT we send (GTR bearer tokens today; logout
// tokens, SETs and client assertions build on the same Signer).
package keys
