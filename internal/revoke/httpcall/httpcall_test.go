package httpcall_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/httpcall"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
)

type seen struct {
	method, uri, auth, ctype, body string
}

func server(t *testing.T, status int) (*httptest.Server, *[]seen) {
	t.Helper()
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

var job = revoke.Job{EventID: "okta:1", Subject: events.Subject{ID: "00u1&all=false", Email: "jane@example.com"}}

// Hydra's subject-wide revocation, templated: the subject is escaped into
// the query, so it cannot add parameters of its own.
func TestHydraStyleDelete(t *testing.T) {
	srv, got := server(t, 204)
	d, err := httpcall.New(httpcall.Config{
		Method: "DELETE", URL: srv.URL + "/admin/oauth2/auth/sessions/consent?subject={{.Subject.ID | urlquery}}&all=true",
		Success: []int{204}, NotApplicable: []int{404}, Auth: "token", Tokens: outauth.Static("admin-token"),
		AllowInsecureHTTP: true, Client: srv.Client(), Now: time.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := d.Revoke(context.Background(), job)
	if res.Class != revoke.Succeeded {
		t.Fatalf("class %s: %v", res.Class, res.Err)
	}
	want := seen{"DELETE", "/admin/oauth2/auth/sessions/consent?subject=00u1%26all%3Dfalse&all=true", "Bearer admin-token", "", ""}
	if len(*got) != 1 || (*got)[0] != want {
		t.Errorf("request %+v, want %+v", *got, want)
	}
}

func TestJSONBodyAndClasses(t *testing.T) {
	for _, c := range []struct {
		status int
		want   revoke.Class
	}{{200, revoke.Succeeded}, {404, revoke.NotApplicable}, {503, revoke.Retry}, {429, revoke.Retry}, {409, revoke.Permanent}} {
		srv, got := server(t, c.status)
		d, err := httpcall.New(httpcall.Config{
			Method: "POST", URL: srv.URL + "/users/revoke", Body: `{"email": {{json .Subject.Email}}, "reason": {{json .Job.EventID}}}`,
			Headers: map[string]string{"Content-Type": "application/json"},
			Success: []int{200}, NotApplicable: []int{404}, AllowInsecureHTTP: true, Client: srv.Client(), Now: time.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		res := d.Revoke(context.Background(), job)
		if res.Class != c.want {
			t.Errorf("HTTP %d: class %s, want %s", c.status, res.Class, c.want)
		}
		if b := (*got)[0].body; b != `{"email": "jane@example.com", "reason": "okta:1"}` || (*got)[0].ctype != "application/json" {
			t.Errorf("body %q type %q", b, (*got)[0].ctype)
		}
	}
}

// A subject field cannot move the request to another scheme or host, nor
// change its path or query: every value is escaped into the URL, and a
// template whose host is a value is refused.
func TestRenderedURLMustStayAllowed(t *testing.T) {
	if _, err := httpcall.New(httpcall.Config{
		Method: "POST", URL: "{{.Subject.Email}}", Success: []int{200}, Client: http.DefaultClient, Now: time.Now,
	}); err == nil {
		t.Error("a template that is all subject was accepted")
	}
	d, err := httpcall.New(httpcall.Config{
		Method: "POST", URL: "https://{{.Subject.Login}}.example.com/x", Success: []int{200}, Client: http.DefaultClient, Now: time.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := d.Revoke(context.Background(), revoke.Job{Subject: events.Subject{Login: "evil.example"}})
	if res.Class != revoke.Permanent || !strings.Contains(res.Err.Error(), "host") {
		t.Errorf("a subject in the host: class %s err %v, want a permanent refusal", res.Class, res.Err)
	}

	srv, got := server(t, 204)
	d, err = httpcall.New(httpcall.Config{
		Method: "DELETE", URL: srv.URL + "/users/{{.Subject.Email}}/sessions?reason={{.Job.EventID}}", Success: []int{204},
		AllowInsecureHTTP: true, Client: srv.Client(), Now: time.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	res = d.Revoke(context.Background(), revoke.Job{EventID: "okta:1&all=true", Subject: events.Subject{Email: "a@x.example/../../admin?all=1#"}})
	want := "/users/a%40x.example%2F..%2F..%2Fadmin%3Fall%3D1%23/sessions?reason=okta%3A1%26all%3Dtrue"
	if res.Class != revoke.Succeeded || len(*got) != 1 || (*got)[0].uri != want {
		t.Errorf("class %s, request %+v, want %s", res.Class, *got, want)
	}
	// A value that is a dot segment would step up the path at a server
	// that resolves them: refused, nothing sent.
	for _, email := range []string{".", ".."} {
		res = d.Revoke(context.Background(), revoke.Job{EventID: "okta:2", Subject: events.Subject{Email: email}})
		if res.Class != revoke.Permanent || res.Err == nil {
			t.Errorf("email %q: class %s err %v, want a permanent refusal", email, res.Class, res.Err)
		}
	}
	if len(*got) != 1 {
		t.Errorf("a dot-segment subject was sent: %+v", *got)
	}
}

func TestBadTemplatesAreRefusedAtStart(t *testing.T) {
	_, err := httpcall.New(httpcall.Config{Method: "POST", URL: "https://x/{{.Subject.Nope", Success: []int{200}, Client: http.DefaultClient, Now: time.Now})
	if err == nil {
		t.Fatal("broken template accepted")
	}
}
