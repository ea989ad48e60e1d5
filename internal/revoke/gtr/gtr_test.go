package gtr_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

const issuer = "https://lw.example"

func setup(t *testing.T, script func(int, map[string]string) int, delay time.Duration) (*gtrtest.Receiver, *keys.Signer) {
	t.Helper()
	signer, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(signer.JWKS()) }))
	t.Cleanup(jwks.Close)
	r := gtrtest.New(gtrtest.Options{Issuer: issuer, JWKSURL: jwks.URL, Script: script, Delay: delay})
	t.Cleanup(r.Close)
	return r, signer
}

func driver(t *testing.T, r *gtrtest.Receiver, s *keys.Signer, format string) *gtr.Driver {
	t.Helper()
	d, err := gtr.New(gtr.Config{Endpoint: r.URL, SubjectFormat: format, Auth: "signed_jwt", Signer: s, Issuer: issuer,
		ClientID: "lifecycle-worker", Client: &http.Client{}, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var jane = events.Subject{Issuer: "https://acme.okta.com", ID: "00ujane", Login: "jane@example.com", Email: "jane@example.com"}

func TestClassification(t *testing.T) {
	for _, c := range []struct {
		status int
		want   revoke.Class
	}{
		{200, revoke.Succeeded}, {204, revoke.Succeeded},
		{404, revoke.NotApplicable},
		{429, revoke.Retry}, {500, revoke.Retry}, {502, revoke.Retry}, {503, revoke.Retry},
		{400, revoke.Permanent}, {401, revoke.Permanent}, {403, revoke.Permanent}, {422, revoke.Permanent},
		{302, revoke.Permanent},
	} {
		r, s := setup(t, func(int, map[string]string) int { return c.status }, 0)
		res := driver(t, r, s, "email").Revoke(context.Background(), revoke.Job{Subject: jane})
		if res.Class != c.want || res.HTTPStatus != c.status {
			t.Errorf("HTTP %d: class %s status %d, want %s", c.status, res.Class, res.HTTPStatus, c.want)
		}
		if rej := r.Rejected(); len(rej) > 0 {
			t.Errorf("HTTP %d: receiver rejected the request: %v", c.status, rej)
		}
	}
}

func TestSubjectFormats(t *testing.T) {
	for _, c := range []struct {
		format  string
		subject events.Subject
		want    string
		class   revoke.Class
	}{
		{"email", jane, "jane@example.com", revoke.Succeeded},
		{"email", events.Subject{ID: "00u1", Login: "bob@example.com"}, "bob@example.com", revoke.Succeeded},
		{"email", events.Subject{ID: "00u1", Login: "bob"}, "", revoke.Permanent},
		{"iss_sub", jane, "https://acme.okta.com|00ujane", revoke.Succeeded},
		{"iss_sub", events.Subject{ID: "00u1"}, "", revoke.Permanent},
		{"opaque", jane, "00ujane", revoke.Succeeded},
	} {
		r, s := setup(t, nil, 0)
		res := driver(t, r, s, c.format).Revoke(context.Background(), revoke.Job{Subject: c.subject})
		if res.Class != c.class {
			t.Errorf("%s %+v: class %s (%v), want %s", c.format, c.subject, res.Class, res.Err, c.class)
			continue
		}
		if c.class != revoke.Succeeded {
			if len(r.Requests()) != 0 {
				t.Errorf("%s: sent a request without the identifier", c.format)
			}
			continue
		}
		if got := gtrtest.Key(r.Requests()[0].SubID); got != c.want {
			t.Errorf("%s: sub_id %q, want %q", c.format, got, c.want)
		}
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	r, s := setup(t, nil, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := driver(t, r, s, "email").Revoke(ctx, revoke.Job{Subject: jane})
	if res.Class != revoke.Retry {
		t.Errorf("class %s (%v), want retry", res.Class, res.Err)
	}
}

func TestEveryRequestHasAFreshJTI(t *testing.T) {
	r, s := setup(t, nil, 0)
	d := driver(t, r, s, "email")
	for range 5 {
		if res := d.Revoke(context.Background(), revoke.Job{Subject: jane}); res.Class != revoke.Succeeded {
			t.Fatalf("class %s: %v (receiver: %v)", res.Class, res.Err, r.Rejected())
		}
	}
	seen := map[string]bool{}
	for _, q := range r.Requests() {
		if seen[q.JTI] {
			t.Errorf("jti %s reused", q.JTI)
		}
		seen[q.JTI] = true
	}
}
