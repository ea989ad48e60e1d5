package audit

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Token is an API bearer token and its role.
type Token struct {
	Token string
	Role  string // auditor | operator
}

// DeadLetterOps is the dead-letter queue as the API offers it.
type DeadLetterOps interface {
	List(ctx context.Context, target, eventID, actor string) (any, error)
	Replay(ctx context.Context, target, eventID, actor string) (any, error)
}

// API serves the audit trail (and the operations on it) over HTTP.
type API struct {
	reader *Reader
	tokens []Token
	dlq    DeadLetterOps
	log    *slog.Logger
	// refusals records refused requests (through the refusal budget).
	refusals Recorder
	now      func() time.Time
}

// RecordRefusals puts every refused request (no or unknown token: 401; a
// role that may not: 403) on record through rec, which should be the
// refusal budget: the API is as reachable as the intake endpoints.
func (a *API) RecordRefusals(rec Recorder, now func() time.Time) { a.refusals, a.now = rec, now }

func (a *API) refused(r *http.Request, status int, reason string) {
	if a.refusals == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	rec := Record{ID: "api/" + uuid.NewString(), Time: a.now().UTC(), Type: TypeAuthFailed, Source: "api", Outcome: "rejected",
		HTTPStatus: status, Error: reason, Detail: Detail(map[string]any{"method": r.Method, "path": r.URL.Path, "remote": events.RemoteHost(r)})}
	if err := a.refusals.Record(ctx, rec); err != nil {
		a.log.ErrorContext(ctx, "audit api: refusal record lost", "err", err)
	}
}

// NewAPI returns the API. With no tokens every request is refused; dlq may
// be nil (no dead-letter routes). With a nil reader only its token check
// (Reader) may be used, not Register: a process without the audit index.
func NewAPI(r *Reader, tokens []Token, dlq DeadLetterOps, log *slog.Logger) (*API, error) {
	if log == nil {
		return nil, errors.New("audit api: logger required")
	}
	if len(tokens) == 0 {
		log.Info("the audit API and /metrics have no token: they refuse every request (set audit.tokens, or AUDIT_TOKEN without a config file)")
	}
	return &API{reader: r, tokens: tokens, dlq: dlq, log: log}, nil
}

// Register mounts the API's routes. Auditors read; operators also act.
func (a *API) Register(mux *http.ServeMux) {
	read := func(h http.HandlerFunc) http.Handler { return a.authorize(h, RoleAuditor, RoleOperator) }
	mux.Handle("GET /v1/audit/records", read(a.records))
	mux.Handle("GET /v1/audit/checkpoints/latest", read(a.latestCheckpoint))
	mux.Handle("GET /v1/audit/export", read(a.export))
	mux.Handle("GET /v1/offboardings", read(a.offboardings))
	mux.Handle("GET /v1/offboardings/{event_id}", read(a.offboarding))
	if a.dlq != nil {
		mux.Handle("GET /v1/dlq", read(a.dlqList))
		mux.Handle("POST /v1/dlq/replay", a.authorize(a.dlqReplay, RoleOperator))
	}
}

// Reader authorizes h for any API role (auditor or operator).
func (a *API) Reader(h http.HandlerFunc) http.Handler {
	return a.authorize(h, RoleAuditor, RoleOperator)
}

// Roles of API tokens.
const (
	RoleAuditor  = "auditor"
	RoleOperator = "operator"
)

type ctxKey struct{}

// actor names the caller for the audit trail: the role and a fingerprint of
// the token, never the token.
func actor(r *http.Request) string { s, _ := r.Context().Value(ctxKey{}).(string); return s }

// role returns the role of the request's bearer token, comparing against
// every token in constant time, and the token's fingerprint.
func (a *API) role(r *http.Request) (string, string) {
	h := r.Header.Get("Authorization")
	got, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || got == "" {
		return "", ""
	}
	role := ""
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare([]byte(got), []byte(t.Token)) == 1 {
			role = t.Role
		}
	}
	sum := sha256.Sum256([]byte(got))
	return role, hex.EncodeToString(sum[:4])
}

func (a *API) authorize(next http.HandlerFunc, roles ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, fp := a.role(r)
		if role == "" {
			a.refused(r, http.StatusUnauthorized, "missing or unknown API token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="lifecycle-worker"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		if !slices.Contains(roles, role) {
			a.refused(r, http.StatusForbidden, "role "+role+" ("+fp+") may not do this")
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "role " + role + " may not do this"})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, role+":"+fp)))
	})
}

func (a *API) latestCheckpoint(w http.ResponseWriter, r *http.Request) {
	c, err := a.reader.LatestCheckpoint(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if c == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no checkpoint yet"})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) dlqList(w http.ResponseWriter, r *http.Request) {
	out, err := a.dlq.List(r.Context(), r.URL.Query().Get("target"), r.URL.Query().Get("event"), actor(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
}

func (a *API) dlqReplay(w http.ResponseWriter, r *http.Request) {
	out, err := a.dlq.Replay(r.Context(), r.URL.Query().Get("target"), r.URL.Query().Get("event"), actor(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"replayed": out})
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.log.ErrorContext(r.Context(), "api", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
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
	if f.Type != "" && !slices.Contains(Types, Type(f.Type)) {
		names := make([]string, len(Types))
		for i, t := range Types {
			names[i] = string(t)
		}
		errs = append(errs, fmt.Errorf("type: %q is not one of %s", f.Type, strings.Join(names, ", ")))
	}
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
	if v := get("repeats"); v != "" {
		if f.Repeats, err = strconv.ParseBool(v); err != nil {
			errs = append(errs, errors.New("repeats: true or false"))
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
		a.fail(w, r, err)
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

func parseSLA(q map[string][]string) (time.Duration, error) {
	v := ""
	if s := q["sla"]; len(s) > 0 {
		v = s[0]
	}
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("sla: want a duration like 1h")
	}
	return d, nil
}

func (a *API) offboardings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := OffboardingFilter{Status: q.Get("status")}
	var err error
	if f.Status != "" && f.Status != "complete" && f.Status != "incomplete" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "status: complete or incomplete"})
		return
	}
	if v := q.Get("since"); v != "" {
		if f.Since, err = ParseTime(v, time.Now()); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "since: " + err.Error()})
			return
		}
	}
	if f.SLA, err = parseSLA(q); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	list, totals, err := a.reader.Offboardings(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list == nil {
		list = []Offboarding{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"totals": totals, "offboardings": list})
}

func (a *API) offboarding(w http.ResponseWriter, r *http.Request) {
	d, err := parseSLA(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	o, err := a.reader.Offboarding(r.Context(), r.PathValue("event_id"), d)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if o == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no deprovisioning with that event id"})
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// export streams the trail: no page limit, constant memory.
func (a *API) export(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "jsonl"
	}
	types := map[string]string{"jsonl": "application/x-ndjson", "ocsf": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
	ctype, ok := types[format]
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "format: jsonl, csv or ocsf"})
		return
	}
	q.Del("limit")
	f, err := ParseFilter(q)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="audit.`+map[string]string{"jsonl": "jsonl", "ocsf": "ocsf.jsonl", "csv": "csv"}[format]+`"`)
	w.Header().Set("Cache-Control", "no-store")
	// A long export outlives the server's write timeout; this response
	// alone may take as long as it needs.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	if err := a.reader.Export(r.Context(), w, format, f); err != nil {
		// Headers are gone; the truncated body and the log say it.
		a.log.ErrorContext(r.Context(), "export", "err", err)
	}
}
