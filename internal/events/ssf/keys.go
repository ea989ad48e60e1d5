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

	mu       sync.Mutex
	keys     *jose.JSONWebKeySet
	fetched  time.Time     // when the last fetch started
	fetching chan struct{} // closed when the fetch in flight ends
	lastErr  error
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

// errKeysUnavailable: the keys could not be fetched (lately).
var errKeysUnavailable = errors.New("the transmitter's keys could not be fetched")

// find returns the keys a SET with this kid may be verified with: the one
// with that kid, or every key when the SET names none. A fetch happens at
// most once per minRefresh whatever its outcome, one at a time, and without
// holding the lock that other SETs need: a slow or failing jwks_uri cannot
// turn every SET into a fetch, nor queue SETs behind one.
func (k *keySet) find(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	match := func() []jose.JSONWebKey {
		if k.keys == nil {
			return nil
		}
		if kid == "" {
			return k.keys.Keys
		}
		return k.keys.Key(kid)
	}
	k.mu.Lock()
	if found := match(); len(found) > 0 || k.url == "" {
		k.mu.Unlock()
		if len(found) == 0 {
			return nil, errUnknownKey
		}
		return found, nil
	}
	if k.fetching == nil && !k.fetched.IsZero() && k.now().Sub(k.fetched) < k.minRefresh {
		defer k.mu.Unlock()
		if k.keys == nil {
			return nil, fmt.Errorf("%w: %w", errKeysUnavailable, k.lastErr)
		}
		return nil, errUnknownKey
	}
	done := k.fetching
	if done == nil {
		done = make(chan struct{})
		k.fetching, k.fetched = done, k.now() // a failed fetch also waits minRefresh before the next
		k.mu.Unlock()
		set, err := k.fetch(ctx)
		k.mu.Lock()
		if err == nil {
			k.keys = set
		}
		k.lastErr, k.fetching = err, nil
		close(done)
	} else {
		k.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		k.mu.Lock()
	}
	defer k.mu.Unlock()
	if found := match(); len(found) > 0 {
		return found, nil
	}
	if k.keys == nil {
		return nil, fmt.Errorf("%w: %w", errKeysUnavailable, k.lastErr)
	}
	return nil, errUnknownKey
}

func (k *keySet) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch transmitter keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch transmitter keys: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<10)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode transmitter keys: %w", err)
	}
	return &set, nil
}
