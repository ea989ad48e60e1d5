package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/oktaapi"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
)

// redirector answers every request with a redirect to elsewhere, and
// elsewhere counts what reaches it.
func redirector(t *testing.T) (from string, reached *atomic.Int32) {
	t.Helper()
	reached = &atomic.Int32{}
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached.Add(1) }))
	t.Cleanup(elsewhere.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, reached
}

// No client that carries a credential follows a redirect: the Okta API
// client (System Log, user lookups), the client-credentials token request,
// and the dlq command's API call.
func TestCredentialedClientsDoNotFollowRedirects(t *testing.T) {
	from, reached := redirector(t)
	okta, err := oktaapi.New(oktaapi.Config{OrgURL: from, Token: "ssws-token", Client: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := okta.Do(context.Background(), http.MethodGet, "/api/v1/logs", nil); err != nil || resp.Status != http.StatusTemporaryRedirect {
		t.Errorf("the Okta API client's answer to a redirect: %+v, %v", resp, err)
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the Okta API client followed a redirect (%d requests elsewhere)", n)
	}

	cc := &outauth.ClientCredentials{TokenURL: from + "/token", ClientID: "c", Secret: "s3cret", Method: outauth.ClientSecretPost,
		Client: &http.Client{Timeout: 5 * time.Second}, Now: time.Now}
	if _, err := cc.Token(context.Background()); err == nil {
		t.Error("a redirected token request gave a token")
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the token request followed a redirect (%d requests elsewhere)", n)
	}

	var out, errb bytes.Buffer
	if code := cli([]string{"dlq", "list", "--url", from, "--token", "operator-token-0123456789"}, &out, &errb); code == 0 {
		t.Error("dlq list through a redirect succeeded")
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("dlq list followed a redirect (%d requests elsewhere)", n)
	}
}

// serve without --config checks the defaults and the environment's secrets
// as it would a file.
func TestServeValidatesDefaults(t *testing.T) {
	t.Setenv("OKTA_HOOK_SECRET", "a")
	var errb bytes.Buffer
	if code := cli([]string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, &bytes.Buffer{}, &errb); code != 1 ||
		!bytes.Contains(errb.Bytes(), []byte("shorter than 16")) {
		t.Errorf("serve with a one-letter hook secret: exit %d, %s", code, errb.String())
	}
}

// The data dir and the audit index are the owner's alone, even when the
// dir was made looser before the first start.
func TestDataDirIsOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, testConfig(t, dir, ""))
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "audit.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %s, want %s", path, fi.Mode().Perm(), want)
		}
	}
}

// Every server we call learns who calls: our User-Agent carries the version,
// and /metrics has the build.
func TestUserAgentAndBuildInfo(t *testing.T) {
	var ua string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ua = r.Header.Get("User-Agent") }))
	defer srv.Close()
	resp, err := (&http.Client{Transport: withUA(outboundTransport())}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ua != "lifecycle-worker/"+readBuildInfo().Version {
		t.Errorf("User-Agent %q", ua)
	}
	w := startWorker(t, testConfig(t, t.TempDir(), ""))
	found := false
	for k, v := range w.scrape() {
		found = found || strings.HasPrefix(k, "lw_build_info{") && strings.Contains(k, `go_version="go1.`) && v == 1
	}
	if !found {
		t.Error("no lw_build_info on /metrics")
	}
}
