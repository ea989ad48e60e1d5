package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// OIDC is the console's OpenID Connect client: who may sign in.
type OIDC struct {
	Issuer, ClientID, ClientSecret string
	Scopes                         []string
	// RolesClaim is mapped to roles: a value in Operators makes an
	// operator, else one in Auditors an auditor; anyone else is refused.
	RolesClaim          string
	Auditors, Operators []string
	// HTTPClient calls the provider (discovery, keys, token endpoint).
	HTTPClient *http.Client
}

// provider is discovered on first use, so that a worker starts (and takes
// signals) while the IdP is unreachable; a failed discovery is retried at
// the next sign-in.
type provider struct {
	cfg OIDC
	mu  sync.Mutex
	p   *oidc.Provider
	v   *oidc.IDTokenVerifier
	// A failed discovery is answered from memory for a while: strangers
	// opening the sign-in page must not make us call the IdP at will.
	failedAt time.Time
	failure  error
}

const rediscoverAfter = 30 * time.Second

func (p *provider) get(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		return p.p, p.v, nil
	}
	if p.failure != nil && time.Since(p.failedAt) < rediscoverAfter {
		return nil, nil, p.failure
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.cfg.HTTPClient), 10*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(dctx, p.cfg.Issuer)
	if err != nil {
		p.failedAt, p.failure = time.Now(), fmt.Errorf("discover %s: %w", p.cfg.Issuer, err)
		return nil, nil, p.failure
	}
	p.p, p.v = prov, prov.Verifier(&oidc.Config{ClientID: p.cfg.ClientID})
	return p.p, p.v, nil
}

func (c *Console) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: c.oidc.cfg.ClientID, ClientSecret: c.oidc.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: c.base + "/auth/callback", Scopes: c.oidc.cfg.Scopes}
}

const (
	cookieSession = "lw_console"
	cookieSignIn  = "lw_console_signin"
	signInWindow  = 10 * time.Minute
)

// session returns the request's session, nil when there is none valid.
func (c *Console) session(r *http.Request) *session {
	v := c.cookies.get(r, cookieSession)
	if v == "" {
		return nil
	}
	var s session
	if err := c.sealer.open(cookieSession, v, &s); err != nil || !c.now().Before(s.Expires) || s.Role == "" {
		return nil
	}
	return &s
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, s session) {
	s.CSRF, s.Expires = randomToken(), c.now().Add(c.lifetime)
	sealed, err := c.sealer.seal(cookieSession, s)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.cookies.set(w, cookieSession, sealed, c.lifetime)
	c.record(r, audit.Record{Type: audit.TypeConsoleSignIn, Source: "console", Outcome: "accepted",
		Detail: audit.Detail(map[string]any{"who": audit.BoundString(s.Subject), "name": audit.BoundString(s.Name), "role": s.Role, "via": s.Via, "remote": events.RemoteHost(r)})})
	c.log.InfoContext(r.Context(), "console sign-in", "role", s.Role, "via", s.Via, "who", s.Subject)
}

// signIn shows the sign-in page (or goes straight to the IdP when that is
// the only way in).
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	// Only messages of ours, never text from the link that led here.
	c.render(w, r, http.StatusOK, "signin", nil, map[string]any{"OIDC": c.oidc != nil, "Local": c.local})
}

// oidcStart sends the browser to the IdP: authorization code flow with
// PKCE (S256), state and nonce kept in a sealed, short-lived cookie.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	prov, _, err := c.oidc.get(r.Context())
	if err != nil {
		c.log.WarnContext(r.Context(), "console: the IdP is unreachable", "err", err)
		c.render(w, r, http.StatusBadGateway, "signin", nil, map[string]any{"OIDC": true, "Local": c.local,
			"Error": "The identity provider cannot be reached; try again in a moment."})
		return
	}
	p := pending{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Expires: c.now().Add(signInWindow)}
	if ret := r.URL.Query().Get("return"); localPath(ret) {
		p.Return = ret
	}
	sealed, err := c.sealer.seal(cookieSignIn, p)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.cookies.set(w, cookieSignIn, sealed, signInWindow)
	http.Redirect(w, r, c.oauth(prov).AuthCodeURL(p.State, oidc.Nonce(p.Nonce), oauth2.S256ChallengeOption(p.Verifier)), http.StatusFound)
}

// localPath accepts a same-origin path only: no scheme, no host, no //,
// no backslash and no control character (browsers drop tabs and newlines
// from URLs, so "/\t/evil.example" would become "//evil.example").
func localPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.Contains(p, "\\") {
		return false
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// oidcCallback finishes the flow: state, code exchange with the PKCE
// verifier, ID token (signature by the issuer's keys, iss, aud, exp,
// nonce), then the role from the configured claim.
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	deny := func(status int, reason, shown string) {
		c.refused(r, status, reason)
		c.cookies.clear(w, cookieSignIn)
		c.render(w, r, status, "signin", nil, map[string]any{"OIDC": true, "Local": c.local, "Error": shown})
	}
	var p pending
	sealed := c.cookies.get(r, cookieSignIn)
	if sealed == "" || c.sealer.open(cookieSignIn, sealed, &p) != nil || !c.now().Before(p.Expires) {
		deny(http.StatusBadRequest, "sign-in callback without a sign-in under way", "That sign-in expired or was not started here; sign in again.")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.State)) != 1 {
		deny(http.StatusBadRequest, "sign-in callback: state mismatch", "That sign-in does not match the one started here; sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		deny(http.StatusUnauthorized, "the IdP refused the sign-in: "+audit.BoundString(e), "The identity provider refused the sign-in ("+audit.BoundString(e)+").")
		return
	}
	// Anyone can start a sign-in and come back with a code of their own
	// making: the calls it costs us at the IdP are bounded.
	if !c.exchanges.Allow() {
		deny(http.StatusTooManyRequests, "sign-in callbacks over the rate limit", "Too many sign-ins at once; try again in a moment.")
		return
	}
	prov, verifier, err := c.oidc.get(r.Context())
	if err != nil {
		deny(http.StatusBadGateway, "IdP unreachable", "The identity provider cannot be reached; try again in a moment.")
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), c.oidc.cfg.HTTPClient), 10*time.Second)
	defer cancel()
	tok, err := c.oauth(prov).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.Verifier))
	if err != nil {
		c.log.WarnContext(r.Context(), "console: code exchange failed", "err", err)
		deny(http.StatusUnauthorized, "code exchange failed", "The identity provider did not accept the sign-in code; sign in again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		deny(http.StatusUnauthorized, "ID token refused: "+audit.BoundString(err.Error()), "The identity provider's ID token was not valid.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.Nonce)) != 1 {
		deny(http.StatusUnauthorized, "ID token nonce mismatch", "The identity provider's ID token was not issued for this sign-in.")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		deny(http.StatusUnauthorized, "ID token claims unreadable", "The identity provider's ID token was not valid.")
		return
	}
	who := idt.Subject
	if e, _ := claims["email"].(string); e != "" {
		who = e
	}
	name, _ := claims["name"].(string)
	role := c.roleOf(claims[c.oidc.cfg.RolesClaim])
	if role == "" {
		deny(http.StatusForbidden, "signed in at the IdP but holds no console role: "+audit.BoundString(who),
			"You signed in as "+who+", but your account holds no console role (ask for the auditor or operator group).")
		return
	}
	c.cookies.clear(w, cookieSignIn)
	c.startSession(w, r, session{Subject: who, Name: name, Role: role, Via: "oidc"})
	ret := p.Return
	if ret == "" {
		ret = "/"
	}
	http.Redirect(w, r, ret, http.StatusSeeOther)
}

// roleOf maps the roles claim (a string or a list of strings).
func (c *Console) roleOf(v any) string {
	var vals []string
	switch t := v.(type) {
	case string:
		vals = []string{t}
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				vals = append(vals, s)
			}
		}
	}
	for _, v := range vals {
		if slices.Contains(c.oidc.cfg.Operators, v) {
			return audit.RoleOperator
		}
	}
	for _, v := range vals {
		if slices.Contains(c.oidc.cfg.Auditors, v) {
			return audit.RoleAuditor
		}
	}
	return ""
}

// localSignIn takes an audit API token as a password: the quick start's
// way in, served only to loopback clients of a loopback listener.
func (c *Console) localSignIn(w http.ResponseWriter, r *http.Request) {
	if !c.local || !loopbackClient(r) {
		c.refused(r, http.StatusForbidden, "local sign-in from a non-loopback client or disabled")
		http.Error(w, "local sign-in is not available here", http.StatusForbidden)
		return
	}
	if !c.sameOrigin(r) {
		c.refused(r, http.StatusForbidden, "local sign-in: cross-origin form")
		http.Error(w, "cross-origin form refused", http.StatusForbidden)
		return
	}
	got := r.PostFormValue("token")
	role := ""
	for _, t := range c.tokens {
		if subtle.ConstantTimeCompare([]byte(got), []byte(t.Token)) == 1 {
			role = t.Role
		}
	}
	if got == "" || role == "" {
		c.refused(r, http.StatusUnauthorized, "local sign-in: unknown token")
		c.render(w, r, http.StatusUnauthorized, "signin", nil, map[string]any{"OIDC": c.oidc != nil, "Local": true, "Error": "That token is not an audit token."})
		return
	}
	sum := sha256.Sum256([]byte(got))
	c.startSession(w, r, session{Subject: "token " + hex.EncodeToString(sum[:4]), Role: role, Via: "local"})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func loopbackClient(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	c.cookies.clear(w, cookieSession)
	http.Redirect(w, r, "/auth/signin", http.StatusSeeOther)
}

// sameOrigin: a state-changing request must come from our own pages. The
// browser's Origin (or Sec-Fetch-Site) says where a form was posted from.
func (c *Console) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == c.origin
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	return true // not a browser (no Origin, no fetch metadata): the CSRF token still decides
}

// authorized wraps a page: a session is required (else the sign-in page),
// and for mutating requests a same-origin form carrying the session's CSRF
// token. roles limits who may use it.
func (c *Console) authorized(h func(http.ResponseWriter, *http.Request, *session), roles ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/auth/signin?return="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.refused(r, http.StatusUnauthorized, "console: no session")
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if len(roles) > 0 && !slices.Contains(roles, s.Role) {
			c.refused(r, http.StatusForbidden, "console: role "+s.Role+" ("+audit.BoundString(s.Subject)+") may not "+r.Method+" "+r.URL.Path)
			c.render(w, r, http.StatusForbidden, "forbidden", s, map[string]any{"Need": strings.Join(roles, " or ")})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !c.sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
				c.refused(r, http.StatusForbidden, "console: form without a valid CSRF token ("+audit.BoundString(s.Subject)+")")
				http.Error(w, "this form expired or did not come from the console; reload the page", http.StatusForbidden)
				return
			}
		}
		h(w, r, s)
	}
}

func (c *Console) refused(r *http.Request, status int, reason string) {
	c.record(r, audit.Record{Type: audit.TypeAuthFailed, Source: "console", Outcome: "rejected", HTTPStatus: status, Error: reason,
		Detail: audit.Detail(map[string]any{"method": r.Method, "path": audit.BoundString(r.URL.Path), "remote": events.RemoteHost(r)})})
}

func (c *Console) record(r *http.Request, rec audit.Record) {
	if c.recorder == nil {
		return
	}
	rec.ID, rec.Time = "console/"+uuid.NewString(), c.now().UTC()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	if err := c.recorder.Record(ctx, rec); err != nil && !errors.Is(err, context.Canceled) {
		c.log.ErrorContext(ctx, "console: record lost", "type", rec.Type, "err", err)
	}
}
