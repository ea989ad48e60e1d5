package revoke

import (
	"context"
	"net/http"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
)

// Shared is what the worker gives every driver it opens: the key its JWTs
// are signed with (the target's signing_alg), our issuer, an HTTP client
// (the target's TLS, redirects refused), the bearer tokens of the target's
// auth (nil without), and the clock.
type Shared struct {
	Signer *keys.Signer
	Issuer string
	Client *http.Client
	// Auth is "signed_jwt", "token" (Tokens is set) or "none".
	Auth   string
	Tokens TokenSource
	Now    func() time.Time
}

// Registration is a driver as the worker knows it: its name under
// targets[].driver, how to open it from a target's configuration, the
// checks of that configuration only it can make, and (optionally) how to
// probe a target without revoking anything (targets check). A driver is
// one package and one line in internal/revoke/drivers.
type Registration struct {
	Name string
	// Defaults fills what only this driver knows of a target (nil: none).
	Defaults func(t *config.TargetConfig, c *config.Config)
	// Validate checks what only this driver knows of a target (nil: none).
	Validate func(t config.TargetConfig, secretsOptional bool) []error
	// Uses names the settings of this driver's own that t sets (nil:
	// none): a target of another driver may not set them.
	Uses func(t config.TargetConfig) []string
	Open func(t config.TargetConfig, sh Shared) (Driver, error)
	// Probe reports on a target without revoking (nil: a GET of the
	// endpoint shows it is reachable).
	Probe func(ctx context.Context, t config.TargetConfig, sh Shared) string
	// AlgorithmsKey names the member of the target's issuer metadata that
	// lists the JWS algorithms it takes for our JWTs ("" or nil: none).
	AlgorithmsKey func(t config.TargetConfig) string
}
