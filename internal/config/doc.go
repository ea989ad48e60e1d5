// Package config loads lifecycle-worker's YAML configuration: ${ENV}
// expansion in values, unknown keys rejected, defaults applied, and every
// problem reported at once so an operator fixes a file in one pass.
package config
