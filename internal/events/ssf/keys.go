package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is a transmitter's public keys: fixed (from a file), or fetched
// from its jwks_uri and fetched again when a SET names a kid we do not
// know — how transmitters rotate — at most once per minRefresh.
type keySet struct {
	url        string
	client     *http.Client
	now        func() time.Time
	minRefresh time.Duration

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

// errUnknownKey: no key of the transmitter matches the SET's kid.
var errUnknownKey = errors.New("no key of the transmitter matches the SET's kid")

func staticKeys(raw []byte) (*keySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("jwks: no keys")
	}
	return &keySet{keys: &set}, nil
}

// find returns the keys a SET with this kid may be verified with: the one
// with that kid, or every key when the SET names none.
func (k *keySet) find(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	match := func() []jose.JSONWebKey {
		if k.keys == nil {
			return nil
		}
		if kid == "" {
			return k.keys.Keys
		}
		return k.keys.Key(kid)
	}
	if found := match(); len(found) > 0 || k.url == "" {
		if len(found) == 0 {
			return nil, errUnknownKey
		}
		return found, nil
	}
	if k.keys != nil && k.now().Sub(k.fetched) < k.minRefresh {
		return nil, errUnknownKey
	}
	if err := k.fetch(ctx); err != nil {
		return nil, err
	}
	if found := match(); len(found) > 0 {
		return found, nil
	}
	return nil, errUnknownKey
}

func (k *keySet) fetch(ctx context.Context) error {
	k.fetched = k.now() // a failed fetch also waits minRefresh before the next
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch transmitter keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch transmitter keys: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<10)).Decode(&set); err != nil {
		return fmt.Errorf("decode transmitter keys: %w", err)
	}
	k.keys = &set
	return nil
}
