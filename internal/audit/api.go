package audit

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Token is an API bearer token and its role.
type Token struct {
	Token string
	Role  string // auditor | operator
}

// API serves the audit trail over HTTP.
type API struct {
	reader *Reader
	tokens []Token
	log    *slog.Logger
}

// NewAPI returns the audit API. With no tokens every request is refused.
func NewAPI(r *Reader, tokens []Token, log *slog.Logger) (*API, error) {
	if r == nil || log == nil {
		return nil, errors.New("audit api: reader and logger are required")
	}
	if len(tokens) == 0 {
		log.Warn("audit API has no token configured: every request will be refused (set audit.tokens)")
	}
	return &API{reader: r, tokens: tokens, log: log}, nil
}

// Register mounts the API's routes.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("GET /v1/audit/records", a.authorize(http.HandlerFunc(a.records)))
}

// role returns the role of the request's bearer token, comparing against
// every token in constant time.
func (a *API) role(r *http.Request) string {
	h := r.Header.Get("Authorization")
	got, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || got == "" {
		return ""
	}
	role := ""
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare([]byte(got), []byte(t.Token)) == 1 {
			role = t.Role
		}
	}
	return role
}

func (a *API) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.role(r) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lifecycle-worker"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ParseFilter reads a Filter from query parameters (the API's and the
// CLI's shared vocabulary).
func ParseFilter(q map[string][]string) (Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := Filter{Subject: get("subject"), EventID: get("event"), Target: get("target"), Type: get("type"), Outcome: get("outcome")}
	var errs []error
	var err error
	if v := get("since"); v != "" {
		if f.Since, err = ParseTime(v, time.Now()); err != nil {
			errs = append(errs, errors.New("since: "+err.Error()))
		}
	}
	if v := get("until"); v != "" {
		if f.Until, err = ParseTime(v, time.Now()); err != nil {
			errs = append(errs, errors.New("until: "+err.Error()))
		}
	}
	if v := get("after"); v != "" {
		if f.After, err = strconv.ParseUint(v, 10, 64); err != nil {
			errs = append(errs, errors.New("after: not a sequence number"))
		}
	}
	if v := get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > MaxLimit {
			errs = append(errs, errors.New("limit: not in 1.."+strconv.Itoa(MaxLimit)))
		}
	}
	return f, errors.Join(errs...)
}

// ParseTime accepts RFC 3339 or a duration back from now ("24h", "30d").
func ParseTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("want RFC 3339 time or a duration like 24h or 30d")
}

func (a *API) records(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	recs, err := a.reader.Query(r.Context(), f)
	if err != nil {
		a.log.ErrorContext(r.Context(), "audit query", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "query failed"})
		return
	}
	resp := struct {
		Records []Record `json:"records"`
		Next    string   `json:"next,omitempty"`
	}{Records: recs}
	if resp.Records == nil {
		resp.Records = []Record{}
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(recs) == limit {
		q := r.URL.Query()
		q.Set("after", strconv.FormatUint(recs[len(recs)-1].Seq, 10))
		resp.Next = r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
