// Package jwks holds a signer's public keys as a verifier needs them: fixed
// (from a file), fetched from a jwks_uri, or found through the issuer's
// metadata (RFC 8414 / OpenID discovery) first. A kid we do not know makes
// it fetch again — how signers rotate — at most once per refresh interval
// whatever the outcome, one fetch at a time, and never under a lock that
// other verifications wait on.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ErrUnknownKey: no key of the signer matches the kid.
var ErrUnknownKey = errors.New("no key of the signer matches the kid")

// ErrUnavailable: the keys could not be had (lately); the caller should
// answer so that the sender retries.
var ErrUnavailable = errors.New("the signer's keys could not be fetched")

// Set is one signer's keys.
type Set struct {
	url        string // jwks_uri; "" when static or not yet discovered
	issuer     string // discover jwks_uri from this issuer's metadata
	client     *http.Client
	now        func() time.Time
	minRefresh time.Duration
	checkURL   func(string) error

	mu       sync.Mutex
	keys     *jose.JSONWebKeySet
	fetched  time.Time     // when the last fetch started
	fetching chan struct{} // closed when the fetch in flight ends
	lastErr  error
}

// Static returns fixed keys (a JWKS document).
func Static(raw []byte) (*Set, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("jwks: no keys")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, errors.New("jwks: holds a private key")
		}
	}
	return &Set{keys: &set}, nil
}

// Remote returns keys fetched from url with client (which should refuse
// redirects and have a timeout).
func Remote(url string, client *http.Client, now func() time.Time, minRefresh time.Duration) *Set {
	return &Set{url: url, client: client, now: now, minRefresh: minRefresh}
}

// Discovered returns keys found through issuer's metadata: its
// /.well-known/openid-configuration (or RFC 8414's
// oauth-authorization-server), whose issuer must be exactly issuer and whose
// jwks_uri must pass checkURL.
func Discovered(issuer string, client *http.Client, now func() time.Time, minRefresh time.Duration, checkURL func(string) error) *Set {
	return &Set{issuer: issuer, client: client, now: now, minRefresh: minRefresh, checkURL: checkURL}
}

// Find returns the keys a token with this kid may be verified with: the one
// with that kid, or every key when the token names none.
func (k *Set) Find(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
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
	if found := match(); len(found) > 0 || (k.url == "" && k.issuer == "") {
		k.mu.Unlock()
		if len(found) == 0 {
			return nil, ErrUnknownKey
		}
		return found, nil
	}
	if k.fetching == nil && !k.fetched.IsZero() && k.now().Sub(k.fetched) < k.minRefresh {
		defer k.mu.Unlock()
		return nil, k.missing()
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
	return nil, k.missing()
}

// missing is the error for a kid not found: unknown when we have keys,
// unavailable when we never got any. Called with mu held.
func (k *Set) missing() error {
	if k.keys == nil {
		if k.lastErr != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, k.lastErr)
		}
		return ErrUnavailable
	}
	return ErrUnknownKey
}

func (k *Set) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	url := k.url
	if url == "" {
		var err error
		if url, err = k.discover(ctx); err != nil {
			return nil, err
		}
	}
	var set jose.JSONWebKeySet
	if err := k.getJSON(ctx, url, &set); err != nil {
		return nil, fmt.Errorf("fetch keys: %w", err)
	}
	for _, key := range set.Keys {
		if !key.IsPublic() {
			return nil, errors.New("fetch keys: the JWKS holds a private key")
		}
	}
	return &set, nil
}

// discover reads jwks_uri from the issuer's metadata (RFC 8414 §3, OpenID
// Discovery §4): the document must name the same issuer.
func (k *Set) discover(ctx context.Context) (string, error) {
	base := strings.TrimRight(k.issuer, "/")
	var errs []error
	for _, u := range []string{base + "/.well-known/openid-configuration", wellKnown(k.issuer, "oauth-authorization-server")} {
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := k.getJSON(ctx, u, &meta); err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.TrimRight(meta.Issuer, "/") != base {
			errs = append(errs, fmt.Errorf("%s names issuer %q, not %q", u, meta.Issuer, k.issuer))
			continue
		}
		if meta.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s has no jwks_uri", u))
			continue
		}
		if k.checkURL != nil {
			if err := k.checkURL(meta.JWKSURI); err != nil {
				errs = append(errs, fmt.Errorf("%s: jwks_uri: %w", u, err))
				continue
			}
		}
		return meta.JWKSURI, nil
	}
	return "", fmt.Errorf("discover keys of %s: %w", k.issuer, errors.Join(errs...))
}

// wellKnown inserts /.well-known/<name> before the issuer's path (RFC 8414
// §3.1).
func wellKnown(issuer, name string) string {
	scheme, rest, ok := strings.Cut(issuer, "://")
	if !ok {
		return issuer
	}
	host, path, _ := strings.Cut(rest, "/")
	path = strings.TrimRight(path, "/")
	if path != "" {
		path = "/" + path
	}
	return scheme + "://" + host + "/.well-known/" + name + path
}

func (k *Set) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 256<<10)).Decode(v)
}
