package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Config is what the HTTP server mounts.
type Config struct {
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// Intakes are the IdP-facing endpoints, each at the routes it declares.
	Intakes []Intake
	// JWKS is our public key set; Issuer our issuer (SSF metadata);
	// Algorithms those our JWTs are signed with.
	JWKS       []byte
	Issuer     string
	Algorithms []string
	// Register mounts further routes (the audit API).
	Register []func(*http.ServeMux)
	// Ready reports whether the process can take traffic.
	Ready func(context.Context) error
	// Metrics serves Prometheus exposition; Authorize guards it (the API's
	// tokens: every endpoint authenticates).
	Metrics   http.Handler
	Authorize func(http.HandlerFunc) http.Handler
	Log       *slog.Logger
}

// Intake is one way signals come in (Okta hooks, SCIM, SSF, Universal
// Logout): its name (for metrics and logs), the routes it answers and its
// handler.
type Intake struct {
	Name    string
	Routes  []string
	Handler http.Handler
}

// New returns the handler tree.
func New(cfg Config) (http.Handler, error) {
	if cfg.Log == nil || cfg.Ready == nil || len(cfg.JWKS) == 0 {
		return nil, errors.New("server: logger, readiness check and JWKS are required")
	}
	mux := http.NewServeMux()
	for _, in := range cfg.Intakes {
		for _, route := range in.Routes {
			mux.Handle(route, in.Handler)
		}
	}
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(cfg.JWKS)
	})
	// SSF transmitter metadata: receivers of our SETs find our keys here.
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"spec_version": "1_0", "issuer": cfg.Issuer, "jwks_uri": cfg.Issuer + "/.well-known/jwks.json",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8935"},
		})
	})
	// Discovery for relying parties that take our back-channel logout tokens
	// (or other JWTs of ours): they can be configured with our URL alone.
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": cfg.Issuer, "jwks_uri": cfg.Issuer + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": cfg.Algorithms, "backchannel_logout_supported": true,
			"subject_types_supported": []string{"public"},
		})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if cfg.Metrics != nil && cfg.Authorize != nil {
		mux.Handle("GET /metrics", cfg.Authorize(cfg.Metrics.ServeHTTP))
	}
	for _, reg := range cfg.Register {
		reg(mux)
	}
	return recoverer(cfg.Log, securityHeaders(mux)), nil
}

// Serve runs an http.Server on ln until ctx ends, then shuts it down
// gracefully within grace.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cfg Config, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func recoverer(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "panic in handler", "path", r.URL.Path, "panic", v)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
