package main

import (
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
)

// older reports whether semantic version a (vX.Y.Z[-pre]) is below b.
func older(a, b string) bool {
	parse := func(v string) (n [3]int) {
		v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
		fmt.Sscanf(v, "%d.%d.%d", &n[0], &n[1], &n[2])
		return n
	}
	x, y := parse(a), parse(b)
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}

// Modules with fixed vulnerabilities must be at or past the fix. The list
// grows with each advisory that reaches one of our dependencies (govulncheck
// needs a network database; this needs nothing).
func TestNoKnownVulnerableModules(t *testing.T) {
	fixed := map[string]string{
		// GHSA-c6gw-w398-hv78 (CVE-2025-27144): unbounded memory in JWE parsing. v3 came with
		// the Okta SDK (gone, decision 0022); kept should anything bring it back.
		"github.com/go-jose/go-jose/v3": "v3.0.4",
		"github.com/go-jose/go-jose/v4": "v4.0.5",
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build info")
	}
	seen := 0
	for _, m := range info.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		if want, ok := fixed[m.Path]; ok {
			seen++
			if older(m.Version, want) {
				t.Errorf("%s %s has a fixed vulnerability; use %s or later", m.Path, m.Version, want)
			}
		}
	}
	if seen == 0 {
		t.Error("none of the watched modules is in the build info: the check checks nothing")
	}
	if !older("v3.0.3", "v3.0.4") || older("v3.0.4", "v3.0.4") || !older("v3.0.4", "v3.1.0") {
		t.Error("version comparison is wrong")
	}
}
