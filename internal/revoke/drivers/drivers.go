// Package drivers is the registry of revocation drivers: config loading,
// serve and targets check find each driver here by its name. Adding a
// driver is its package (with a revoke.Registration) and one line below.
package drivers

import (
	"fmt"
	"slices"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/backchannel"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/httpcall"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/okta"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/scimpush"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/ssfpush"
)

var all = []revoke.Registration{
	gtr.Registration,
	backchannel.Registration,
	ssfpush.Registration,
	okta.Registration,
	httpcall.Registration,
	scimpush.Registration,
}

// Config loading knows the drivers and their own checks from here.
func init() {
	config.Drivers = Names()
	config.DriverChecks = check
	config.DriverDefaults = defaults
}

func defaults(t *config.TargetConfig, c *config.Config) {
	if r, ok := Lookup(t.Driver); ok && r.Defaults != nil {
		r.Defaults(t, c)
	}
}

// Lookup finds a driver by name.
func Lookup(name string) (revoke.Registration, bool) {
	i := slices.IndexFunc(all, func(r revoke.Registration) bool { return r.Name == name })
	if i < 0 {
		return revoke.Registration{}, false
	}
	return all[i], true
}

// Names are the registered drivers, in registration order.
func Names() []string {
	out := make([]string, len(all))
	for i, r := range all {
		out[i] = r.Name
	}
	return out
}

func check(t config.TargetConfig, secretsOptional bool) []error {
	var errs []error
	for _, other := range all {
		if other.Name == t.Driver || other.Uses == nil {
			continue
		}
		for _, setting := range other.Uses(t) {
			errs = append(errs, fmt.Errorf("%s: only the %s driver takes this setting", setting, other.Name))
		}
	}
	if r, ok := Lookup(t.Driver); ok && r.Validate != nil {
		errs = append(errs, r.Validate(t, secretsOptional)...)
	}
	return errs // an unknown driver config reports itself
}

// Open opens the driver of a target.
func Open(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
	r, ok := Lookup(t.Driver)
	if !ok {
		return nil, fmt.Errorf("unknown driver %q (one of %v)", t.Driver, Names())
	}
	return r.Open(t, sh)
}
