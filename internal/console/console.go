// Package console is the security team's web console: offboardings, one
// person's timeline, the targets' health, dead letters and the evidence,
// server-rendered from the audit index. People sign in at the
// organisation's IdP (OpenID Connect, code flow with PKCE) and get a role
// from a claim; sessions are sealed cookies; every form carries a CSRF
// token; nothing is loaded from outside the worker.
package console

import (
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

//go:embed templates/*.html static/*
var assets embed.FS

// DeadLetters is the dead-letter queue as the console offers it.
type DeadLetters interface {
	ListFor(ctx context.Context, f revoke.DLQFilter, actor string) ([]revoke.Listed, error)
	Replay(ctx context.Context, f revoke.DLQFilter, actor string) ([]revoke.Listed, error)
}

// TargetHealth is one target as this node sees it now.
type TargetHealth struct {
	Name   string
	Driver string
	// Held is how long this node holds the target's jobs (open breaker or
	// Retry-After); 0 when it calls the target.
	Held    time.Duration
	Backlog int64 // jobs waiting (-1: unknown)
	Dead    int64 // dead letters (-1: unknown)
}

// Config is what the console needs.
type Config struct {
	Reader      *audit.Reader
	DeadLetters DeadLetters                                       // nil: no dead-letter page
	Health      func(ctx context.Context) ([]TargetHealth, error) // nil: targets from the trail only
	// PublicURL is where browsers reach the worker; cookies are Secure
	// when it is https.
	PublicURL string
	OIDC      *OIDC // nil: no IdP sign-in
	// LocalLogin takes an audit token (Tokens) as a password, from
	// loopback clients only.
	LocalLogin bool
	Tokens     []audit.Token
	SessionKey []byte
	Lifetime   time.Duration
	SLA        time.Duration
	// CheckpointKeys verify checkpoints on the evidence page.
	CheckpointKeys  []ed25519.PublicKey
	CheckpointFiles []string
	// MaxUncovered and MaxUncoveredAge: how far the head may run ahead of
	// the newest checkpoint (as audit verify judges it).
	MaxUncovered    uint64
	MaxUncoveredAge time.Duration
	Recorder        audit.Recorder // sign-ins and refusals
	Now             func() time.Time
	Log             *slog.Logger
}

// Console serves the pages.
type Console struct {
	reader   *audit.Reader
	dlq      DeadLetters
	health   func(ctx context.Context) ([]TargetHealth, error)
	base     string
	origin   string
	oidc     *provider
	local    bool
	tokens   []audit.Token
	sealer   *sealer
	cookies  cookies
	lifetime time.Duration
	sla      time.Duration
	keys     []ed25519.PublicKey
	files    []string
	maxAhead uint64
	maxAge   time.Duration
	recorder audit.Recorder
	now      func() time.Time
	log      *slog.Logger
	pages    map[string]*template.Template
	live     chan struct{} // a slot per live-update stream
	// exchanges bounds the code exchanges sign-in callbacks make at the IdP.
	exchanges *rate.Limiter

	verifyMu   sync.Mutex
	lastVerify *verification
}

type verification struct {
	At     time.Time
	By     string
	Result audit.VerifyResult
	Err    string
}

// New checks the configuration and parses the templates.
func New(cfg Config) (*Console, error) {
	if cfg.Reader == nil || cfg.Log == nil || cfg.Now == nil {
		return nil, errors.New("console: reader, clock and logger are required")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || u.Host == "" {
		return nil, errors.New("console: public URL required")
	}
	s, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	c := &Console{reader: cfg.Reader, dlq: cfg.DeadLetters, health: cfg.Health, base: strings.TrimSuffix(cfg.PublicURL, "/"),
		origin: u.Scheme + "://" + u.Host, local: cfg.LocalLogin, tokens: cfg.Tokens, sealer: s, cookies: cookies{secure: u.Scheme == "https"},
		lifetime: cfg.Lifetime, sla: cfg.SLA, keys: cfg.CheckpointKeys, files: cfg.CheckpointFiles,
		maxAhead: cfg.MaxUncovered, maxAge: cfg.MaxUncoveredAge, recorder: cfg.Recorder,
		now: cfg.Now, log: cfg.Log, live: make(chan struct{}, 32),
		exchanges: rate.NewLimiter(5, 20)}
	if c.lifetime <= 0 {
		c.lifetime = 8 * time.Hour
	}
	if c.sla <= 0 {
		c.sla = time.Hour
	}
	if cfg.OIDC != nil {
		o := *cfg.OIDC
		if o.HTTPClient == nil {
			o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		}
		c.oidc = &provider{cfg: o}
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return c, nil
}

// Register mounts the console: pages at /, sign-in under /auth/, assets
// under /static/.
func (c *Console) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "static")
	files := http.FileServerFS(static)
	mux.Handle("GET /static/", c.headers(http.StripPrefix("/static/", files)))
	mux.Handle("GET /favicon.ico", c.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, assets, "static/favicon.svg") // browsers ask for it whatever the page says
	})))
	mux.Handle("GET /auth/signin", c.headers(http.HandlerFunc(c.signIn)))
	mux.Handle("GET /auth/oidc", c.headers(http.HandlerFunc(c.oidcStart)))
	mux.Handle("GET /auth/callback", c.headers(http.HandlerFunc(c.oidcCallback)))
	mux.Handle("POST /auth/local", c.headers(http.HandlerFunc(c.localSignIn)))
	mux.Handle("POST /auth/signout", c.headers(c.authorized(func(w http.ResponseWriter, r *http.Request, _ *session) { c.signOut(w, r) })))
	any := []string{audit.RoleAuditor, audit.RoleOperator}
	mux.Handle("GET /{$}", c.headers(c.authorized(c.offboardings, any...)))
	mux.Handle("GET /offboardings/{event_id}", c.headers(c.authorized(c.offboarding, any...)))
	mux.Handle("GET /people", c.headers(c.authorized(c.person, any...)))
	mux.Handle("GET /people/report", c.headers(c.authorized(c.personReport, any...)))
	mux.Handle("GET /targets", c.headers(c.authorized(c.targets, any...)))
	mux.Handle("GET /evidence", c.headers(c.authorized(c.evidence, any...)))
	mux.Handle("POST /evidence/verify", c.headers(c.authorized(c.verify, any...)))
	mux.Handle("GET /evidence/export", c.headers(c.authorized(c.export, any...)))
	mux.Handle("GET /live", c.headers(c.authorized(c.liveUpdates, any...)))
	if c.dlq != nil {
		mux.Handle("GET /dead-letters", c.headers(c.authorized(c.deadLetters, any...)))
		mux.Handle("GET /dead-letters/replay", c.headers(c.authorized(c.confirmReplay, audit.RoleOperator)))
		mux.Handle("POST /dead-letters/replay", c.headers(c.authorized(c.replay, audit.RoleOperator)))
	}
}

// headers: nothing but our own origin may load, frame or receive anything.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send "Origin: null" on our own forms
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if c.cookies.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.log.ErrorContext(r.Context(), "console", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
