package scimpush

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
)

const token = "app-scim-token-0123456789"

type user struct {
	ID, UserName, Email, ExternalID string
	Active                          bool
}

// app is a SCIM service provider double with the quirks of real ones, and
// it checks every request it gets: the bearer token, the media types, the
// filter grammar and the PatchOp. Its dialect is "entra" (PATCH answers
// 204, active as a string "True"/"False") or "okta" (PATCH answers 200 with
// the user; an empty list has no Resources member at all).
type app struct {
	t       *testing.T
	dialect string
	mu      sync.Mutex
	users   []*user
	calls   []string
	script  func(r *http.Request) int // a status to answer instead, 0: none
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/scim+json") {
		a.t.Errorf("%s %s: Accept %q", r.Method, r.URL, r.Header.Get("Accept"))
	}
	if a.script != nil {
		if code := a.script(r); code != 0 {
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "7")
			}
			if code == http.StatusFound {
				w.Header().Set("Location", "https://elsewhere.example/scim/v2/Users")
			}
			w.WriteHeader(code)
			return
		}
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/scim/v2/Users":
		f := r.URL.Query().Get("filter")
		var attr, value string
		if _, err := fmt.Sscanf(f, "%s eq %q", &attr, &value); err != nil {
			a.t.Errorf("filter %q is not attr eq \"value\"", f)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var hits []map[string]any
		for _, u := range a.users {
			match := map[string]string{"userName": u.UserName, "emails.value": u.Email, "externalId": u.ExternalID}[attr]
			if attr == "userName" || attr == "emails.value" {
				if strings.EqualFold(match, value) {
					hits = append(hits, a.render(u))
				}
			} else if match == value {
				hits = append(hits, a.render(u))
			}
		}
		body := map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:ListResponse"}, "totalResults": len(hits), "Resources": hits}
		if len(hits) == 0 && a.dialect == "okta" {
			delete(body, "Resources")
		}
		w.Header().Set("Content-Type", "application/scim+json")
		_ = json.NewEncoder(w).Encode(body)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/scim/v2/Users/"):
		if ct := r.Header.Get("Content-Type"); ct != "application/scim+json" {
			a.t.Errorf("PATCH Content-Type %q", ct)
		}
		var p struct {
			Schemas    []string
			Operations []struct {
				Op, Path string
				Value    any
			}
		}
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &p); err != nil || len(p.Schemas) != 1 || p.Schemas[0] != "urn:ietf:params:scim:api:messages:2.0:PatchOp" ||
			len(p.Operations) != 1 || p.Operations[0].Op != "replace" || p.Operations[0].Path != "active" || p.Operations[0].Value != false {
			a.t.Errorf("PatchOp: %s", raw)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		u := a.byID(strings.TrimPrefix(r.URL.Path, "/scim/v2/Users/"))
		if u == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		u.Active = false
		if a.dialect == "entra" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/scim+json")
		_ = json.NewEncoder(w).Encode(a.render(u))
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/scim/v2/Users/"):
		id := strings.TrimPrefix(r.URL.Path, "/scim/v2/Users/")
		for i, u := range a.users {
			if u.ID == id {
				a.users = append(a.users[:i], a.users[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
	default:
		a.t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (a *app) render(u *user) map[string]any {
	var active any = u.Active
	if a.dialect == "entra" {
		active = map[bool]string{true: "True", false: "False"}[u.Active]
	}
	return map[string]any{"id": u.ID, "userName": u.UserName, "active": active, "emails": []any{map[string]any{"value": u.Email}}}
}

func (a *app) byID(id string) *user {
	for _, u := range a.users {
		if u.ID == id {
			return u
		}
	}
	return nil
}

func newApp(t *testing.T, dialect string) (*app, *httptest.Server) {
	a := &app{t: t, dialect: dialect, users: []*user{
		{ID: "1001", UserName: "ann@corp.example", Email: "ann@corp.example", Active: true},
		{ID: "1002", UserName: "bo", Email: "bo@corp.example", ExternalID: "00ubo", Active: true},
		{ID: "1003", UserName: "twin1", Email: "twin@corp.example", Active: true},
		{ID: "1004", UserName: "twin2", Email: "twin@corp.example", Active: true},
	}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

func driver(t *testing.T, srv *httptest.Server, cfg Config) *Driver {
	t.Helper()
	cfg.Endpoint = srv.URL + "/scim/v2"
	cfg.Tokens = outauth.Static(token)
	cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cfg.Now = time.Now
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func job(s events.Subject) revoke.Job {
	return revoke.Job{ID: "e|t", EventID: "e", Target: "t", Subject: s}
}

func TestDeactivatesOnceInEachDialect(t *testing.T) {
	for _, dialect := range []string{"entra", "okta"} {
		t.Run(dialect, func(t *testing.T) {
			a, srv := newApp(t, dialect)
			d := driver(t, srv, Config{})
			r := d.Revoke(context.Background(), job(events.Subject{Email: "Ann@corp.example"}))
			if r.Class != revoke.Succeeded || a.byID("1001").Active {
				t.Fatalf("first: %v %v, active %v", r.Class, r.Err, a.byID("1001").Active)
			}
			if r.Detail["scim_id"] != "1001" || r.Detail["found_by"] != "userName" {
				t.Errorf("detail %v", r.Detail)
			}
			// Idempotent: inactive already is not applicable, and nothing is sent.
			calls := len(a.calls)
			r = d.Revoke(context.Background(), job(events.Subject{Email: "ann@corp.example"}))
			if r.Class != revoke.NotApplicable || len(a.calls) != calls+1 {
				t.Errorf("second: %v %v after %v", r.Class, r.Err, a.calls[calls:])
			}
			// Unknown at the application.
			if r := d.Revoke(context.Background(), job(events.Subject{Email: "nobody@corp.example", Login: "nobody"})); r.Class != revoke.NotApplicable {
				t.Errorf("unknown user: %v %v", r.Class, r.Err)
			}
		})
	}
}

func TestFindsByEachAttributeAndRefusesToGuess(t *testing.T) {
	a, srv := newApp(t, "okta")
	d := driver(t, srv, Config{Match: []string{"userName", "email", "externalId"}})
	// userName "bo" is not the email: found by email on the second try.
	if r := d.Revoke(context.Background(), job(events.Subject{Login: "bo.other", Email: "bo@corp.example"})); r.Class != revoke.Succeeded || r.Detail["found_by"] != "email" {
		t.Errorf("by email: %v %v %v", r.Class, r.Err, r.Detail)
	}
	a.byID("1002").Active = true
	d = driver(t, srv, Config{Match: []string{"externalId"}})
	if r := d.Revoke(context.Background(), job(events.Subject{ID: "00ubo"})); r.Class != revoke.Succeeded || r.Detail["found_by"] != "externalId" {
		t.Errorf("by externalId: %v %v %v", r.Class, r.Err, r.Detail)
	}
	d = driver(t, srv, Config{Match: []string{"email"}})
	r := d.Revoke(context.Background(), job(events.Subject{Email: "twin@corp.example"}))
	if r.Class != revoke.Permanent || !a.byID("1003").Active || !a.byID("1004").Active {
		t.Errorf("two matches: %v %v — nobody may be deactivated", r.Class, r.Err)
	}
	if r := d.Revoke(context.Background(), job(events.Subject{Login: "only-a-login"})); r.Class != revoke.Permanent {
		t.Errorf("no attribute to match by: %v %v", r.Class, r.Err)
	}
}

func TestDeleteAction(t *testing.T) {
	a, srv := newApp(t, "entra")
	d := driver(t, srv, Config{Action: Delete})
	if r := d.Revoke(context.Background(), job(events.Subject{Email: "ann@corp.example"})); r.Class != revoke.Succeeded || a.byID("1001") != nil {
		t.Fatalf("delete: %v %v", r.Class, r.Err)
	}
	if r := d.Revoke(context.Background(), job(events.Subject{Email: "ann@corp.example"})); r.Class != revoke.NotApplicable {
		t.Errorf("deleted already: %v %v", r.Class, r.Err)
	}
}

// Every answer is classified: 429 and 5xx are retried (with Retry-After), a
// refused token or a redirect needs a human, and the token never appears in
// an error.
func TestAnswersClassified(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		on     string // GET (the lookup) or PATCH
		want   revoke.Class
	}{
		{"lookup rate-limited", 429, "GET", revoke.Retry},
		{"lookup server error", 503, "GET", revoke.Retry},
		{"lookup unauthorized", 401, "GET", revoke.Permanent},
		{"lookup redirected", 302, "GET", revoke.Permanent},
		{"patch rate-limited", 429, "PATCH", revoke.Retry},
		{"patch forbidden", 403, "PATCH", revoke.Permanent},
		{"patch server error", 500, "PATCH", revoke.Retry},
		{"patch gone meanwhile", 404, "PATCH", revoke.NotApplicable},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, srv := newApp(t, "entra")
			a.script = func(r *http.Request) int {
				if r.Method == c.on {
					return c.status
				}
				return 0
			}
			r := driver(t, srv, Config{}).Revoke(context.Background(), job(events.Subject{Email: "ann@corp.example"}))
			if r.Class != c.want {
				t.Fatalf("%d on %s: %v %v", c.status, c.on, r.Class, r.Err)
			}
			if c.status == 429 && r.RetryAfter != 7*time.Second {
				t.Errorf("Retry-After: %v", r.RetryAfter)
			}
			if r.Err != nil && strings.Contains(r.Err.Error(), token) {
				t.Errorf("the token is in the error: %v", r.Err)
			}
		})
	}
	// A wrong token: the application answers 401.
	_, srv := newApp(t, "okta")
	d := driver(t, srv, Config{})
	d.cfg.Tokens = outauth.Static("not-the-token")
	if r := d.Revoke(context.Background(), job(events.Subject{Email: "ann@corp.example"})); r.Class != revoke.Permanent || r.HTTPStatus != 401 {
		t.Errorf("wrong token: %v %d", r.Class, r.HTTPStatus)
	}
}

func TestConfigRefused(t *testing.T) {
	for _, cfg := range []Config{{Endpoint: "https://a.example/scim/v2?x=1"}, {Endpoint: "https://a.example/scim/v2", Action: "suspend"},
		{Endpoint: "https://a.example/scim/v2", Match: []string{"phone"}}} {
		cfg.Tokens, cfg.Client, cfg.Now = outauth.Static(token), http.DefaultClient, time.Now
		if _, err := New(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}

// The lookup's value is a JSON string in the filter (RFC 7644 §3.4.2.2),
// whatever characters the subject's identifier holds.
func TestFilterValueIsAJSONString(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query().Get("filter")
		_, _ = w.Write([]byte(`{"totalResults":0,"Resources":[]}`))
	}))
	defer srv.Close()
	d := driver(t, srv, Config{Match: []string{"userName"}})
	d.Revoke(context.Background(), job(events.Subject{Login: "a\"b\\c\u0007é@x"}))
	if want := `userName eq "a\"b\\c\u0007é@x"`; got != want {
		t.Errorf("filter %s, want %s", got, want)
	}
}

// An id the application gives that is a dot segment is not put in a path:
// PATCH …/Users/.. would reach another resource at a server that resolves
// dot segments.
func TestDotSegmentIDRefused(t *testing.T) {
	a, srv := newApp(t, "okta")
	a.users = append(a.users, &user{ID: "..", UserName: "dots", Email: "dots@corp.example", Active: true})
	d := driver(t, srv, Config{})
	r := d.Revoke(context.Background(), job(events.Subject{Email: "dots@corp.example"}))
	if r.Class != revoke.Permanent || r.Err == nil || !a.byID("..").Active {
		t.Errorf("class %v (%v); active %v", r.Class, r.Err, a.byID("..").Active)
	}
}
