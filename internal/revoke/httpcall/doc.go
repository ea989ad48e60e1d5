// Package httpcall is the driver for authorization servers without a
// standard revocation API: a request templated from the job (URL, headers,
// body), with the statuses that mean success and "not applicable" taken
// from config, e.g. Hydra's
// DELETE /admin/oauth2/auth/sessions/consent?subject={{.Subject.ID | urlquery}}&all=true.
package httpcall
