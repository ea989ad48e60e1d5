package config

import (
	"os"
	"testing"
)

// Any config file: parsed and valid, or refused with an error; never a
// crash. A config that parses validates again the same (defaults are
// idempotent).
func FuzzConfig(f *testing.F) {
	for _, file := range []string{"../../examples/config.yaml", "../../examples/quickstart.yaml", "../../deploy/worker.yaml"} {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("targets: [{name: a, driver: gtr, endpoint: 'https://x', backoff: [-1s]}]"))
	f.Add([]byte("nats: {listen: '[::]:4222', users: [{nkey: U, roles: []}]}"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Parse(raw)
		if err != nil {
			return
		}
		c.setDefaults()
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed config fails validation the second time: %v", err)
		}
	})
}
