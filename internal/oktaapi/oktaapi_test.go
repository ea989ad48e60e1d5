package oktaapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lifecycle-worker/lifecycle-worker/internal/oktaapi"
)

// What goes out: SSWS, JSON, the path as given with one escaped user
// segment, the query; what comes back: any status with its body, Okta's
// error code and summary, X-Rate-Limit-Reset.
func TestRequestAndAnswer(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC).Unix(), 10))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests."}`))
	}))
	defer srv.Close()
	c, err := oktaapi.New(oktaapi.Config{OrgURL: srv.URL + "/ignored/path", Token: "t0ken", Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	path, err := oktaapi.UserPath("jane/../x?y@example.com")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(context.Background(), http.MethodDelete, path+"/sessions", url.Values{"oauthTokens": {"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodDelete || got.URL.EscapedPath() != "/api/v1/users/jane%2F..%2Fx%3Fy@example.com/sessions" || got.URL.RawQuery != "oauthTokens=true" {
		t.Errorf("sent %s %s?%s", got.Method, got.URL.EscapedPath(), got.URL.RawQuery)
	}
	if got.Header.Get("Authorization") != "SSWS t0ken" || got.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", got.Header)
	}
	if resp.OK() || resp.Status != 429 || !resp.RateLimitReset().Equal(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("answer %d, reset %s", resp.Status, resp.RateLimitReset())
	}
	if e := resp.Err("clear sessions").Error(); e != "clear sessions: HTTP 429: E0000047 API call exceeded rate limit due to too many requests." {
		t.Errorf("error %q", e)
	}
	if e := (&oktaapi.Response{Status: 502, Body: []byte("<html>bad gateway</html>")}).Err("x").Error(); e != "x: HTTP 502" {
		t.Errorf("error of a body that is not Okta's %q", e)
	}
	long := []byte(`{"errorCode":"E0000001","errorSummary":"` + strings.Repeat("é", 1<<20) + `"}`)
	if e := (&oktaapi.Response{Status: 400, Body: long}).Err("x").Error(); len(e) > 400 || !utf8.ValidString(e) || !strings.HasSuffix(e, "…") {
		t.Errorf("a 2 MB summary made an error of %d bytes (valid UTF-8: %v)", len(e), utf8.ValidString(e))
	}
	if p, err := oktaapi.UserPath("00u1"); p != "/api/v1/users/00u1" || err != nil {
		t.Errorf("UserPath %q, %v", p, err)
	}
}

// A user that a dot-segment-resolving server or proxy would read as a step
// up the path is no path at all.
func TestUserPathRefusesDotSegments(t *testing.T) {
	for _, id := range []string{"", ".", ".."} {
		if p, err := oktaapi.UserPath(id); err == nil {
			t.Errorf("%q: %q", id, p)
		}
	}
	for _, id := range []string{"...", ".jane", "jane.", "%2e%2e"} {
		if _, err := oktaapi.UserPath(id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
}

// An answer larger than MaxBody is refused, not read into memory whole.
func TestAnswerIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("[", 1<<20))
		for i := 0; i <= oktaapi.MaxBody>>20; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, err := oktaapi.New(oktaapi.Config{OrgURL: srv.URL, Token: "t", Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), http.MethodGet, "/api/v1/logs", nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an answer over MaxBody: %v", err)
	}
}

// Without an org URL of http(s) with a host, a token and a client there is
// no client.
func TestNewRefuses(t *testing.T) {
	for _, cfg := range []oktaapi.Config{
		{OrgURL: "", Token: "t", Client: http.DefaultClient},
		{OrgURL: "acme.okta.com", Token: "t", Client: http.DefaultClient},
		{OrgURL: "ftp://acme.okta.com", Token: "t", Client: http.DefaultClient},
		{OrgURL: "https://acme.okta.com", Token: "", Client: http.DefaultClient},
		{OrgURL: "https://acme.okta.com", Token: "t"},
	} {
		if _, err := oktaapi.New(cfg); err == nil {
			t.Errorf("%+v: a client", cfg)
		}
	}
}
