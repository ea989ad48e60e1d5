// Package gtr is the Global Token Revocation driver
// (draft-parecki-oauth-global-token-revocation-06): a POST of
// {"sub_id": <RFC 9493 identifier>} authenticated by our signed JWT
// (typ global-token-revocation+jwt, aud = the endpoint) or a static bearer
// token, classified as the draft and its deployments answer.
package gtr
