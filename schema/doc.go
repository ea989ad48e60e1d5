// Package schema holds the SQLite migrations of the audit index, applied in
// file-name order, and the JSON Schemas of the Event and the audit Record.
package schema

import "embed"

// Migrations are the *.sql files, applied in name order, each once.
//
//go:embed *.sql
var Migrations embed.FS
