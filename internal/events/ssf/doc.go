// Package ssf receives Shared Signals: Security Event Tokens (RFC 8417, SSF
// 1.0 profile) carrying CAEP and RISC events, pushed to /ssf/events per RFC
// 8935. Each SET is verified against its transmitter's keys — typ
// secevent+jwt, iss of a configured transmitter, a signature by one of its
// keys, our aud, iat not in the future — and each event it carries becomes
// a lifecycle Event, durable before we answer 202.
package ssf
