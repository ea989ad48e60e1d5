package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// quickStartBlocks are the shell blocks of the README's quick start, in
// order: the demo authorization server, the worker, the hook and the query.
func quickStartBlocks(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(raw)
	start := strings.Index(section, "## Quick start")
	end := strings.Index(section[start:], "The hook answers")
	if start < 0 || end < 0 {
		t.Fatal("README has no quick start section")
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section[start:start+end], -1) {
		var lines []string
		for _, l := range strings.Split(m[1], "\n") {
			lines = append(lines, strings.TrimPrefix(l, "   "))
		}
		blocks = append(blocks, strings.Join(lines, "\n"))
	}
	if len(blocks) != 3 {
		t.Fatalf("the quick start has %d shell blocks, want 3", len(blocks))
	}
	return blocks
}

// copyRepo copies the tracked files of the repository to a new directory,
// so the quick start's ./data is the test's own.
func copyRepo(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", "../..", "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		b, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			continue // deleted in the work tree
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// terminal runs a shell block in dir, as a person would in a fresh terminal.
type terminal struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (tm *terminal) Write(p []byte) (int, error) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.Write(p)
}

func (tm *terminal) String() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

func openTerminal(t *testing.T, dir, script string) *terminal {
	t.Helper()
	tm := &terminal{cmd: exec.Command("bash", "-e", "-c", script)}
	tm.cmd.Dir = dir
	tm.cmd.Stdout, tm.cmd.Stderr = tm, tm
	// A fresh terminal: none of the quick start's secrets.
	tm.cmd.Env = slicesWithout(os.Environ(), "OKTA_HOOK_SECRET=", "AUDIT_TOKEN=", "LW_API_TOKEN=")
	tm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := tm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop the whole terminal: go run's child too, and wait until
		// every process of the group is gone (the worker shuts down
		// gracefully and writes its data dir until it has).
		pg := -tm.cmd.Process.Pid
		_ = syscall.Kill(pg, syscall.SIGTERM)
		_, _ = tm.cmd.Process.Wait()
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(pg, 0) == nil {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pg, syscall.SIGKILL)
				deadline = time.Now().Add(10 * time.Second)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return tm
}

func slicesWithout(env []string, prefixes ...string) []string {
	var out []string
	for _, e := range env {
		keep := true
		for _, p := range prefixes {
			keep = keep && !strings.HasPrefix(e, p)
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// The README's quick start, run as written in three fresh terminals: the
// demo authorization server revokes, the hook is answered 200, and the
// audit query — in a terminal without the worker's secrets — prints the
// timeline with the revocation.
func TestQuickStartAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the quick start")
	}
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:9090"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("the quick start needs %s: %v", addr, err)
			}
			t.Skipf("the quick start needs %s, which is taken", addr)
		}
		ln.Close()
	}
	blocks := quickStartBlocks(t)
	dir := copyRepo(t)
	as := openTerminal(t, dir, blocks[0])
	w := openTerminal(t, dir, blocks[1])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo AS terminal:\n%s\nworker terminal:\n%s", as.String(), w.String())
		}
	})
	eventually(t, 3*time.Minute, "the demo AS and the worker up", func() bool {
		resp, err := http.Get("http://127.0.0.1:8080/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		c, err := net.Dial("tcp", "127.0.0.1:9090")
		if err != nil {
			return false
		}
		c.Close()
		return resp.StatusCode == http.StatusOK
	})
	hook, query, _ := strings.Cut(blocks[2], "\n\n")
	hookCmd := exec.Command("bash", "-e", "-c", hook)
	hookCmd.Dir = dir
	out, err := hookCmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "HTTP/1.1 200") {
		t.Fatalf("step 3, the hook: %v\n%s\nworker:\n%s", err, out, w.String())
	}
	eventually(t, 30*time.Second, "the demo AS revoked", func() bool {
		return strings.Contains(as.String(), "revoked all tokens of map[email:john.doe@example.com format:email]")
	})
	var last string
	eventually(t, 2*time.Minute, "the audit query shows the revocation", func() bool {
		cmd := exec.Command("bash", "-e", "-c", query)
		cmd.Dir, cmd.Env = dir, slicesWithout(os.Environ(), "OKTA_HOOK_SECRET=", "AUDIT_TOKEN=")
		b, _ := cmd.CombinedOutput()
		last = string(b)
		return strings.Contains(last, "revocation.succeeded") && strings.Contains(last, "demo-as")
	})
	for _, want := range []string{"event.received", "revocation.planned", "john.doe@example.com"} {
		if !strings.Contains(last, want) {
			t.Errorf("the audit query lacks %s:\n%s", want, last)
		}
	}
	// Step 4: the console, signed in with the audit token.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/auth/local", strings.NewReader(url.Values{"token": {"quickstart-audit-token-123"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://127.0.0.1:8080")
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "john.doe@example.com") || !strings.Contains(string(page), "demo-as") {
		t.Errorf("step 4, the console: %d\n%s", resp.StatusCode, page)
	}
}
