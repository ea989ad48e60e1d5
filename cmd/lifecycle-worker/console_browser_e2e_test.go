package main

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// The console in a real browser (headless Chromium), signed in through a
// real OpenID Provider (ORY Hydra) with a small login-and-consent app: an
// operator sees an offboarding appear live after a hook delivery, opens the
// person's timeline, replays a dead letter (on record with their name); an
// auditor is refused the replay; no page logs a console error. With
// LW_SCREENSHOTS=DIR each page is saved there (docs/console holds them).
func TestConsoleInBrowser(t *testing.T) {
	chrome := browserPath(t)
	loginAddr := freeAddr(t)
	hydraPublic, hydraAdmin, hydraLogs := startHydra(t, "http://"+loginAddr)
	startLoginApp(t, loginAddr, hydraAdmin)

	addr := freeAddr(t)
	base := "http://" + addr
	good := gtrtest.New(gtrtest.Options{Issuer: base})
	defer good.Close()
	var healed atomic.Bool // the broken AS refuses until the operator has fixed it
	broken := gtrtest.New(gtrtest.Options{Issuer: base, Script: func(int, map[string]string) int {
		if healed.Load() {
			return 204
		}
		return 400
	}})
	defer broken.Close()
	hydraJSON(t, "POST", "http://"+hydraAdmin+"/admin/clients", map[string]any{
		"client_id": "lw-console", "client_secret": "lw-console-secret-0123456789",
		"grant_types": []string{"authorization_code"}, "response_types": []string{"code"},
		"scope": "openid profile email groups", "redirect_uris": []string{base + "/auth/callback"},
		"token_endpoint_auth_method": "client_secret_basic",
	}, nil)

	lifetimes := "    max_token_lifetime: 1h\n    revokes_access_tokens: true\n"
	targets := gtrTarget("mcp-notes", good.URL, "email") + lifetimes + gtrTarget("mcp-tickets", broken.URL, "email") + lifetimes + fmt.Sprintf(`console:
  oidc:
    issuer: http://%s
    client_id: lw-console
    client_secret: lw-console-secret-0123456789
    auditors: [security-auditors]
    operators: [security-operators]
    allow_insecure_http: true
`, hydraPublic)
	cfg := testConfig(t, t.TempDir(), targets)
	cfg.Listen, cfg.PublicURL = addr, base
	cfg.Audit.CheckpointInterval = time.Second // so that the trail is signed by the time the operator verifies it
	w := startWorker(t, cfg)
	setJWKS(good, w)
	setJWKS(broken, w)

	shots := os.Getenv("LW_SCREENSHOTS")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1360, 900))...)
	defer cancelAlloc()

	// The operator.
	op, errs := newBrowser(t, alloc)
	browse(t, op, "sign in as operator", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#sso`)), chromedp.Click(chromedp.CSS(`#sso`)),
		chromedp.WaitVisible(chromedp.CSS(`#user`)), chromedp.SetValue(chromedp.CSS(`#user`), "olga"), chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`header .who b`)))
	if got := text(t, op, `header .who`); !strings.Contains(got, "Olga Operator") || !strings.Contains(got, "operator") {
		t.Fatalf("header after sign-in: %q (hydra: %s)", got, hydraLogs)
	}
	// A marker in the page: if it survives, the page was updated in place.
	browse(t, op, "mark the page", evaluate(`window.__stillHere = true`),
		chromedp.WaitVisible(chromedp.CSS(`.live-dot.on`)))
	if resp := w.postHook(deactivation("console-1", "dana.leaver@example.com"), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	browse(t, op, "the offboarding appears live",
		chromedp.WaitVisible(chromedp.Search(`//td/a[contains(., "dana.leaver@example.com")]`)),
		chromedp.WaitVisible(chromedp.Search(`//span[contains(@class, "chip") and contains(@class, "dead_lettered") and contains(., "mcp-tickets")]`)))
	if still, err := chromedp.Run(op, chromedp.Evaluate[bool](`window.__stillHere === true`)); err != nil || !still {
		t.Error("the page was reloaded instead of updated in place")
	}
	screenshot(t, op, shots, "offboardings.png")

	browse(t, op, "person timeline", chromedp.Navigate(base+"/people?q=dana.leaver@example.com"),
		chromedp.WaitVisible(chromedp.CSS(`ul.exposure`)))
	if got := text(t, op, `ul.exposure`); !strings.Contains(got, "mcp-tickets") {
		t.Errorf("exposure left should name mcp-tickets: %q", got)
	}
	if got := text(t, op, `table.records`); !strings.Contains(got, "revocation.dead_lettered") || !strings.Contains(got, "revocation.succeeded") {
		t.Errorf("timeline: %q", got)
	}
	screenshot(t, op, shots, "person.png")

	browse(t, op, "targets", chromedp.Navigate(base+"/targets"), chromedp.WaitVisible(chromedp.CSS(`svg.histogram`)))
	if got := text(t, op, `table.targets`); !strings.Contains(got, "mcp-notes") || !strings.Contains(got, "mcp-tickets") {
		t.Errorf("targets: %q", got)
	}
	screenshot(t, op, shots, "targets.png")

	healed.Store(true)
	browse(t, op, "replay a dead letter", chromedp.Navigate(base+"/dead-letters"),
		chromedp.WaitVisible(chromedp.CSS(`table.dlq`)))
	screenshot(t, op, shots, "dead-letters.png")
	browse(t, op, "confirm the replay", chromedp.Click(chromedp.Search(`//a[contains(., "Replay")]`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-replay`)))
	screenshot(t, op, shots, "replay.png")
	browse(t, op, "replayed", chromedp.Click(chromedp.CSS(`#confirm-replay`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	eventually(t, 30*time.Second, "the replayed revocation succeeds", func() bool {
		return len(w.audit(audit.Filter{Target: "mcp-tickets", Type: string(audit.TypeRevocationSucceeded)})) == 1
	})
	replays := w.audit(audit.Filter{Type: string(audit.TypeRevocationReplayed)})
	if len(replays) != 1 || !strings.Contains(string(replays[0].Detail), "operator:console-oidc:olga@example.com") {
		t.Errorf("the replay should be on record with who clicked: %+v", replays)
	}
	reader, err := audit.OpenReader(cfg.Audit.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	eventually(t, 30*time.Second, "a signed checkpoint over the replay", func() bool {
		c, err := reader.LatestCheckpoint(context.Background())
		h, _ := reader.Head(context.Background())
		return err == nil && c != nil && c.Seq == h.Seq
	})
	browse(t, op, "evidence", chromedp.Navigate(base+"/evidence"), chromedp.WaitVisible(chromedp.CSS(`dl.facts`)),
		chromedp.Click(chromedp.Search(`//button[contains(., "Verify")]`)),
		chromedp.WaitVisible(chromedp.Search(`//dd[contains(., "chain whole")]`)))
	screenshot(t, op, shots, "evidence.png")
	browse(t, op, "the offboarding is complete now", chromedp.Navigate(base+"/people?q=dana.leaver@example.com"),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(@class, "good") and contains(., "Nothing left")]`)))

	// The auditor: reads, may not replay.
	au, auErrs := newBrowser(t, alloc)
	browse(t, au, "sign in as auditor", chromedp.Navigate(base+"/dead-letters"),
		chromedp.WaitVisible(chromedp.CSS(`#sso`)), screenshotAction(t, shots, "signin.png"), chromedp.Click(chromedp.CSS(`#sso`)),
		chromedp.WaitVisible(chromedp.CSS(`#user`)), chromedp.SetValue(chromedp.CSS(`#user`), "alice"), chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`header .who b`)))
	if got := text(t, au, `header .who b`); got != "auditor" {
		t.Fatalf("auditor's role: %q", got)
	}
	replayLinks, err := chromedp.Run(au, chromedp.Evaluate[int](`document.querySelectorAll('a[href^="/dead-letters/replay"]').length`))
	if err != nil || replayLinks != 0 {
		t.Errorf("an auditor sees %d replay links", replayLinks)
	}
	browse(t, au, "replay refused", chromedp.Navigate(base+"/dead-letters/replay?target=mcp-tickets&event=x"),
		chromedp.WaitVisible(chromedp.Search(`//h1[contains(., "Not allowed")]`)))
	refused := w.audit(audit.Filter{Type: string(audit.TypeAuthFailed)})
	found := false
	for _, r := range refused {
		found = found || (r.Source == "console" && strings.Contains(r.Error, "role auditor (alice@example.com) may not"))
	}
	if !found {
		t.Errorf("the auditor's refused replay is not on record: %+v", refused)
	}
	// Someone the IdP knows but who holds no console role.
	nobody, _ := newBrowser(t, alloc)
	browse(t, nobody, "sign in without a role", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#sso`)), chromedp.Click(chromedp.CSS(`#sso`)),
		chromedp.WaitVisible(chromedp.CSS(`#user`)), chromedp.SetValue(chromedp.CSS(`#user`), "mallory"), chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(@class, "error") and contains(., "holds no console role")]`)))
	browse(t, nobody, "a page without a role", chromedp.Navigate(base+"/targets"), chromedp.WaitVisible(chromedp.CSS(`h1`)))
	if got := text(t, nobody, `h1`); got != "Sign in" {
		t.Errorf("without a role the console stays closed; got page %q", got)
	}
	signIns := w.audit(audit.Filter{Type: string(audit.TypeConsoleSignIn)})
	if len(signIns) != 2 {
		t.Errorf("sign-ins on record: %d, want 2", len(signIns))
	}

	// The console's pages only (the test IdP's login form is not ours).
	for _, e := range errs.list() {
		if e.url == "" || strings.HasPrefix(e.url, base) {
			t.Errorf("console error (operator): %s", e)
		}
	}
	for _, e := range auErrs.list() {
		if strings.Contains(e.text, "403") && strings.Contains(e.url, "/dead-letters/replay") {
			continue // the refusal this test asked for
		}
		if e.url == "" || strings.HasPrefix(e.url, base) {
			t.Errorf("console error (auditor): %s", e)
		}
	}
}

// browserPath finds Chromium: required in CI, else the test is skipped.
func browserPath(t *testing.T) string {
	for _, name := range []string{os.Getenv("LW_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (.ci/run installs it)")
	}
	t.Skip("chromium not installed")
	return ""
}

type consoleError struct{ typ, text, url string }

func (e consoleError) String() string { return fmt.Sprintf("%s: %s (%s)", e.typ, e.text, e.url) }

type consoleErrors struct {
	mu   sync.Mutex
	errs []consoleError
}

func (c *consoleErrors) add(e consoleError) { c.mu.Lock(); c.errs = append(c.errs, e); c.mu.Unlock() }
func (c *consoleErrors) list() []consoleError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]consoleError(nil), c.errs...)
}

// newBrowser opens a browser of its own (its own cookies) and collects
// every exception, console.error and error log entry (CSP violations,
// failed loads) of its pages.
func newBrowser(t *testing.T, alloc context.Context) (context.Context, *consoleErrors) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	errs := &consoleErrors{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				errs.add(consoleError{string(m.Type), m.Text, m.URL})
			}
		}
	}()
	return ctx, errs
}

func browse(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, body)
	}
}

func evaluate(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](js)(ctx, t)
		return err
	})
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return strings.Join(strings.Fields(s), " ")
}

func screenshotAction(t *testing.T, dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if dir == "" {
			return nil
		}
		png, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), png, 0o644)
	})
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	browse(t, ctx, "screenshot "+name, screenshotAction(t, dir, name))
}

// startLoginApp is the OpenID Provider's login and consent app: a form to
// pick a test person, then consent granted with the person's email, name
// and groups in the ID token, through Hydra's admin API.
func startLoginApp(t *testing.T, addr, hydraAdmin string) {
	t.Helper()
	people := map[string]struct{ email, name, group string }{
		"olga":    {"olga@example.com", "Olga Operator", "security-operators"},
		"alice":   {"alice@example.com", "Alice Auditor", "security-auditors"},
		"mallory": {"mallory@example.com", "Mallory", "staff"},
	}
	admin := "http://" + hydraAdmin + "/admin/oauth2/auth/requests/"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>IdP sign-in</title><form method="post" action="/login">
<input type="hidden" name="challenge" value="%s"><select id="user" name="user"><option value="alice">alice</option><option value="olga">olga</option><option value="mallory">mallory</option></select>
<button id="login" type="submit">Sign in</button></form>`, html.EscapeString(r.URL.Query().Get("login_challenge")))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		hydraJSON(t, "PUT", admin+"login/accept?login_challenge="+url.QueryEscape(r.PostFormValue("challenge")),
			map[string]any{"subject": r.PostFormValue("user")}, &out)
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		challenge := url.QueryEscape(r.URL.Query().Get("consent_challenge"))
		var req struct {
			Subject        string   `json:"subject"`
			RequestedScope []string `json:"requested_scope"`
		}
		hydraJSON(t, "GET", admin+"consent?consent_challenge="+challenge, nil, &req)
		p := people[req.Subject]
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		hydraJSON(t, "PUT", admin+"consent/accept?consent_challenge="+challenge, map[string]any{
			"grant_scope": req.RequestedScope,
			"session":     map[string]any{"id_token": map[string]any{"email": p.email, "name": p.name, "groups": []string{p.group}}},
		}, &out)
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}
