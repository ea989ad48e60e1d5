package scimtest

import (
	"testing"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events/scim"
)

func TestMemoryStore(t *testing.T) { RunStore(t, scim.NewMemoryStore()) }
