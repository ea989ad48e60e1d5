package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

const (
	auditorToken  = "auditor-token-0123456789"
	operatorToken = "operator-token-0123456789"
)

type records struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (r *records) Record(_ context.Context, recs ...audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, recs...)
	return nil
}

func (r *records) of(t audit.Type) []audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Record
	for _, rec := range r.recs {
		if rec.Type == t {
			out = append(out, rec)
		}
	}
	return out
}

type dlq struct{ replays []string }

func (d *dlq) ListFor(context.Context, revoke.DLQFilter, string) ([]revoke.Listed, error) {
	return nil, nil
}
func (d *dlq) Replay(_ context.Context, f revoke.DLQFilter, actor string) ([]revoke.Listed, error) {
	d.replays = append(d.replays, f.Target+"/"+f.EventID+" by "+actor)
	return []revoke.Listed{{}}, nil
}

type fixture struct {
	c      *Console
	h      http.Handler
	rec    *records
	dlq    *dlq
	now    time.Time
	remote string
}

func newFixture(t *testing.T, publicURL string) *fixture {
	t.Helper()
	db := filepath.Join(t.TempDir(), "audit.db")
	store, err := audit.OpenStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reader, err := audit.OpenReader(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	f := &fixture{rec: &records{}, dlq: &dlq{}, now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), remote: "127.0.0.1:40000"}
	f.c, err = New(Config{Reader: reader, DeadLetters: f.dlq, PublicURL: publicURL, LocalLogin: true,
		Tokens:     []audit.Token{{Token: auditorToken, Role: audit.RoleAuditor}, {Token: operatorToken, Role: audit.RoleOperator}},
		SessionKey: []byte("0123456789abcdef0123456789abcdef"), Lifetime: time.Hour, Recorder: f.rec,
		Now: func() time.Time { return f.now }, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.c.Register(mux)
	f.h = mux
	return f
}

func (f *fixture) do(method, target string, form url.Values, hdr map[string]string, cookies ...*http.Cookie) *http.Response {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = f.remote
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Result()
}

// signIn signs in locally with token and returns the session cookie and
// the session's CSRF token.
func (f *fixture) signIn(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	resp := f.do("POST", "/auth/local", url.Values{"token": {token}}, map[string]string{"Origin": "http://127.0.0.1:8080"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("local sign-in: %d", resp.StatusCode)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "lw_console" {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie: %+v", ck)
	}
	var s session
	if err := f.c.sealer.open(cookieSession, ck.Value, &s); err != nil {
		t.Fatal(err)
	}
	return ck, s.CSRF
}

func TestPagesNeedASession(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	for _, p := range []string{"/", "/people?q=x", "/targets", "/dead-letters", "/evidence", "/evidence/export?format=csv"} {
		resp := f.do("GET", p, nil, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/auth/signin?return=") {
			t.Errorf("GET %s without a session: %d %s", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp := f.do("GET", "/live", nil, map[string]string{"Accept": "text/event-stream"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("live without a session: %d", resp.StatusCode)
	}
	if resp := f.do("POST", "/dead-letters/replay", url.Values{"target": {"a"}, "event": {"b"}}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay without a session: %d", resp.StatusCode)
	}
	if len(f.dlq.replays) != 0 {
		t.Fatalf("replayed without a session: %v", f.dlq.replays)
	}
}

func TestSessionCookieCannotBeForged(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	ck, _ := f.signIn(t, auditorToken)
	if resp := f.do("GET", "/", nil, nil, ck); resp.StatusCode != http.StatusOK {
		t.Fatalf("with the session: %d", resp.StatusCode)
	}
	// A flipped byte, another key, a sign-in cookie passed as a session,
	// an expired session: all are no session.
	raw := []byte(ck.Value)
	raw[len(raw)/2] ^= 1
	other, _ := newSealer([]byte("fedcba9876543210fedcba9876543210"))
	foreign, _ := other.seal(cookieSession, session{Subject: "x", Role: audit.RoleOperator, Expires: f.now.Add(time.Hour)})
	signInCookie, _ := f.c.sealer.seal(cookieSignIn, session{Subject: "x", Role: audit.RoleOperator, Expires: f.now.Add(time.Hour)})
	for name, v := range map[string]string{"tampered": string(raw), "other key": foreign, "sign-in cookie": signInCookie} {
		if resp := f.do("GET", "/", nil, nil, &http.Cookie{Name: "lw_console", Value: v}); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
	f.now = f.now.Add(time.Hour + time.Second)
	if resp := f.do("GET", "/", nil, nil, ck); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("expired session: %d", resp.StatusCode)
	}
}

func TestFormsNeedCSRFAndSameOrigin(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	ck, csrf := f.signIn(t, operatorToken)
	form := url.Values{"target": {"mcp"}, "event": {"e1"}}
	same := map[string]string{"Origin": "http://127.0.0.1:8080"}
	if resp := f.do("POST", "/dead-letters/replay", form, same, ck); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", resp.StatusCode)
	}
	form.Set("csrf", "not-the-token")
	if resp := f.do("POST", "/dead-letters/replay", form, same, ck); resp.StatusCode != http.StatusForbidden {
		t.Errorf("wrong CSRF token: %d", resp.StatusCode)
	}
	form.Set("csrf", csrf)
	if resp := f.do("POST", "/dead-letters/replay", form, map[string]string{"Origin": "https://evil.example"}, ck); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin form: %d", resp.StatusCode)
	}
	if resp := f.do("POST", "/dead-letters/replay", form, map[string]string{"Sec-Fetch-Site": "cross-site"}, ck); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site fetch: %d", resp.StatusCode)
	}
	if len(f.dlq.replays) != 0 {
		t.Fatalf("replayed by a forged form: %v", f.dlq.replays)
	}
	if n := len(f.rec.of(audit.TypeAuthFailed)); n != 4 {
		t.Errorf("refusals on record: %d, want 4", n)
	}
	resp := f.do("POST", "/dead-letters/replay", form, same, ck)
	if resp.StatusCode != http.StatusSeeOther || len(f.dlq.replays) != 1 || !strings.Contains(f.dlq.replays[0], "by operator:console-local:token ") {
		t.Fatalf("a real replay: %d %v", resp.StatusCode, f.dlq.replays)
	}
}

func TestAuditorMayNotReplay(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	ck, csrf := f.signIn(t, auditorToken)
	resp := f.do("POST", "/dead-letters/replay", url.Values{"target": {"mcp"}, "event": {"e1"}, "csrf": {csrf}}, map[string]string{"Origin": "http://127.0.0.1:8080"}, ck)
	if resp.StatusCode != http.StatusForbidden || len(f.dlq.replays) != 0 {
		t.Fatalf("auditor replay: %d %v", resp.StatusCode, f.dlq.replays)
	}
	if resp := f.do("GET", "/dead-letters/replay?target=mcp&event=e1", nil, nil, ck); resp.StatusCode != http.StatusForbidden {
		t.Errorf("auditor confirmation page: %d", resp.StatusCode)
	}
	if resp := f.do("GET", "/dead-letters", nil, nil, ck); resp.StatusCode != http.StatusOK {
		t.Errorf("auditor reads dead letters: %d", resp.StatusCode)
	}
}

func TestLocalSignInOnlyFromLoopbackWithAToken(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	origin := map[string]string{"Origin": "http://127.0.0.1:8080"}
	if resp := f.do("POST", "/auth/local", url.Values{"token": {"wrong-token-0123456789"}}, origin); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", resp.StatusCode)
	}
	if resp := f.do("POST", "/auth/local", url.Values{"token": {auditorToken}}, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin sign-in form: %d", resp.StatusCode)
	}
	f.remote = "192.0.2.7:5555"
	if resp := f.do("POST", "/auth/local", url.Values{"token": {auditorToken}}, origin); resp.StatusCode != http.StatusForbidden {
		t.Errorf("non-loopback client: %d", resp.StatusCode)
	}
	if n := len(f.rec.of(audit.TypeAuthFailed)); n != 3 {
		t.Errorf("refusals on record: %d, want 3", n)
	}
	if n := len(f.rec.of(audit.TypeConsoleSignIn)); n != 0 {
		t.Errorf("sign-ins on record: %d, want 0", n)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, "https://lw.example")
	resp := f.do("GET", "/auth/signin", nil, nil)
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP: %q", csp)
	}
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "same-origin",
		"Strict-Transport-Security": "max-age=31536000"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	// Over https the cookies are Secure and host-only (__Host-).
	f.remote = "127.0.0.1:1"
	resp = f.do("GET", "/auth/oidc", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("OIDC start without an IdP configured: %d", resp.StatusCode)
	}
	if got := f.c.cookies.name(cookieSession); got != "__Host-lw_console" {
		t.Errorf("session cookie name over https: %q", got)
	}
}

func TestCallbackWithoutOrAgainstTheSignInRefused(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	f.c.oidc = &provider{cfg: OIDC{Issuer: "https://idp.example", ClientID: "c"}} // never reached: refused before
	if resp := f.do("GET", "/auth/callback?code=x&state=y", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback with no sign-in under way: %d", resp.StatusCode)
	}
	p, _ := f.c.sealer.seal(cookieSignIn, pending{State: "the-state", Nonce: "n", Verifier: "v", Expires: f.now.Add(time.Minute)})
	if resp := f.do("GET", "/auth/callback?code=x&state=other", nil, nil, &http.Cookie{Name: cookieSignIn, Value: p}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback with another state: %d", resp.StatusCode)
	}
	if resp := f.do("GET", "/auth/callback?error=access_denied&state=the-state", nil, nil, &http.Cookie{Name: cookieSignIn, Value: p}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("callback with the IdP's refusal: %d", resp.StatusCode)
	}
	if n := len(f.rec.of(audit.TypeAuthFailed)); n != 3 {
		t.Errorf("refusals on record: %d, want 3", n)
	}
}

func TestReturnPathsStayLocal(t *testing.T) {
	for p, ok := range map[string]bool{"/": true, "/people?q=a": true, "//evil.example/": false, "/\\evil.example": false,
		"https://evil.example/": false, "": false, "/x\r\nSet-Cookie: a=b": false, "/\t/evil.example": false, "/a\\b": false} {
		if localPath(p) != ok {
			t.Errorf("localPath(%q) = %v", p, !ok)
		}
	}
}

func TestRolesFromTheClaim(t *testing.T) {
	c := &Console{oidc: &provider{cfg: OIDC{Auditors: []string{"sec-audit"}, Operators: []string{"sec-ops"}}}}
	for _, tc := range []struct {
		claim any
		want  string
	}{
		{[]any{"staff", "sec-audit"}, audit.RoleAuditor}, {[]any{"sec-audit", "sec-ops"}, audit.RoleOperator},
		{"sec-ops", audit.RoleOperator}, {[]any{"staff"}, ""}, {nil, ""}, {map[string]any{"sec-ops": true}, ""}, {[]any{1, true}, ""},
	} {
		if got := c.roleOf(tc.claim); got != tc.want {
			t.Errorf("roleOf(%v) = %q, want %q", tc.claim, got, tc.want)
		}
	}
}

func TestLiveStreamsAreBounded(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	ck, _ := f.signIn(t, auditorToken)
	for range cap(f.c.live) {
		f.c.live <- struct{}{}
	}
	if resp := f.do("GET", "/live", nil, nil, ck); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("live stream beyond the slots: %d", resp.StatusCode)
	}
}

func TestPercentilesNearestRank(t *testing.T) {
	xs := []int64{}
	for i := 100; i >= 1; i-- {
		xs = append(xs, int64(i))
	}
	p50, p90, p99, top := percentiles(xs)
	if p50 != 50 || p90 != 90 || p99 != 99 || top != 100 {
		t.Errorf("percentiles of 1..100: %d %d %d %d", p50, p90, p99, top)
	}
	if a, b, c, d := percentiles(nil); a+b+c+d != 0 {
		t.Error("percentiles of nothing")
	}
	if svg := string(histogramSVG([]int64{50, 99, 100, 4000000})); strings.Contains(svg, "<1") || !strings.Contains(svg, "&lt;100ms: 2") {
		t.Errorf("histogram: %s", svg)
	}
}

// Only the offboardings page updates itself: a live dead-letters page would
// put a dlq.listed record on the trail at each refresh, which moves the
// index, which refreshes it again.
func TestOnlyOffboardingsAreLive(t *testing.T) {
	f := newFixture(t, "http://127.0.0.1:8080")
	ck, _ := f.signIn(t, auditorToken)
	for path, live := range map[string]bool{"/": true, "/dead-letters": false, "/targets": false, "/people?q=a@b.c": false, "/evidence": false} {
		resp := f.do("GET", path, nil, nil, ck)
		body, _ := io.ReadAll(resp.Body)
		if got := strings.Contains(string(body), "data-live"); got != live {
			t.Errorf("%s live=%v, want %v", path, got, live)
		}
	}
}

// Anyone can start a sign-in and return with a code they made up: the
// callbacks that make us call the IdP are rate-limited.
func TestCallbacksThatCallTheIdPAreBounded(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer idp.Close()
	f := newFixture(t, "http://127.0.0.1:8080")
	f.c.oidc = &provider{cfg: OIDC{Issuer: idp.URL, ClientID: "c", HTTPClient: idp.Client()}}
	p, _ := f.c.sealer.seal(cookieSignIn, pending{State: "s", Nonce: "n", Verifier: "v", Expires: f.now.Add(time.Minute)})
	codes := map[int]int{}
	for range 30 {
		resp := f.do("GET", "/auth/callback?code=made-up&state=s", nil, nil, &http.Cookie{Name: cookieSignIn, Value: p})
		codes[resp.StatusCode]++
	}
	if codes[http.StatusBadGateway] != 20 || codes[http.StatusTooManyRequests] != 10 {
		t.Errorf("answers to 30 quick callbacks: %v, want 20 that reached the IdP and 10 refused", codes)
	}
}
