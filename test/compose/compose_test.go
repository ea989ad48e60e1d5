// Package compose runs the documented cluster deployment for real: the
// image built from the repository's Dockerfile, docker-compose.yml with
// deploy/ (three NATS nodes with TLS, passwords and mutual-TLS routes, two
// worker replicas, the demo authorization server), under podman-compose.
package compose

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/devcerts"
)

const (
	hookSecret = "compose-hook-secret-0123456789"
	auditToken = "compose-audit-token-0123456789"
	scimToken  = "compose-scim-token-0123456789"
	project    = "lwci"
)

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// The cluster as users run it: a hook to replica A and a SCIM deactivation to
// replica B revoke at the demo authorization server; a NATS node and replica A
// are stopped mid-run while more hooks arrive at B; nothing accepted is lost,
// each revocation happens once, both audit indexes end at the same chain
// head, and audit verify passes in both containers.
func TestComposeCluster(t *testing.T) {
	for _, tool := range []string{"podman", "podman-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" || os.Getenv("LW_COMPOSE") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", tool)
			}
			t.Skipf("%s is not installed: no container engine here", tool)
		}
	}
	if os.Getenv("LW_COMPOSE") == "" {
		// It publishes the compose file's fixed ports and loads the machine:
		// .ci/run runs it on its own, after the other tests.
		t.Skip("run by .ci/run on its own step (LW_COMPOSE=1 go test ./test/compose)")
	}
	repo, _ := filepath.Abs("../..")
	start := time.Now()

	// Binaries built here, images built offline from them.
	ctx := t.TempDir()
	dist := filepath.Join(ctx, "dist")
	if err := os.MkdirAll(filepath.Join(dist, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	static := []string{"CGO_ENABLED=1"}
	run(t, repo, static, "go", "build", "-trimpath", "-buildvcs=false", "-tags", "osusergo,netgo,sqlite_omit_load_extension",
		"-ldflags", `-s -w -buildid= -linkmode external -extldflags "-static" -X main.version=v0.0.0-compose`, "-o", filepath.Join(dist, "lifecycle-worker"), "./cmd/lifecycle-worker")
	run(t, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(dist, "demo-as"), "./examples/demo-as")
	run(t, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(ctx, "nats", "nats-server"), "github.com/nats-io/nats-server/v2")
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "ca-certificates.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "nats", "Containerfile"), []byte("FROM scratch\nCOPY nats-server /nats-server\nEXPOSE 4222 6222 8222\nENTRYPOINT [\"/nats-server\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerfile := filepath.Join(repo, "Dockerfile")
	run(t, ctx, nil, "podman", "build", "-q", "--no-cache", "--format", "docker", "--build-arg", "BINARY=prebuilt", "--build-arg", "VERSION=v0.0.0-compose", "-f", dockerfile, "-t", "localhost/lifecycle-worker:ci", ".")
	run(t, ctx, nil, "podman", "build", "-q", "--no-cache", "--format", "docker", "--build-arg", "BINARY=prebuilt", "--target", "demo-as", "-f", dockerfile, "-t", "localhost/lifecycle-worker-demo-as:ci", ".")
	run(t, filepath.Join(ctx, "nats"), nil, "podman", "build", "-q", "-t", "localhost/lw-nats:ci", ".")
	size := run(t, ctx, nil, "podman", "image", "inspect", "--format", "{{.Size}}", "localhost/lifecycle-worker:ci")
	if !strings.Contains(run(t, ctx, nil, "podman", "image", "inspect", "--format", "{{json .Config.Labels}}", "localhost/lifecycle-worker:ci"), `"org.opencontainers.image.version":"v0.0.0-compose"`) {
		t.Error("the image's version label is not the build's")
	}
	labels := run(t, ctx, nil, "podman", "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Labels}} {{json .Config.Healthcheck}}", "localhost/lifecycle-worker:ci")
	t.Logf("image size %s bytes; %s", strings.TrimSpace(size), strings.TrimSpace(labels))
	if !strings.HasPrefix(labels, "10001:10001") || !strings.Contains(labels, "org.opencontainers.image.source") || !strings.Contains(labels, `"health"`) {
		t.Errorf("image user, labels or health check missing: %s", labels)
	}

	// The compose project: a copy of the files it mounts, with fresh certs.
	proj := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "deploy/compose.ci.yml", "deploy/auth.conf", "deploy/nats-1.conf", "deploy/nats-2.conf",
		"deploy/nats-3.conf", "deploy/worker.yaml", "deploy/worker-demo.yaml"} {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(proj, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proj, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	leaves := map[string][]string{"demo-as": {"demo-as", "localhost", "127.0.0.1"}}
	for i := 1; i <= 3; i++ {
		n := fmt.Sprintf("nats-%d", i)
		leaves[n] = []string{n, "localhost", "127.0.0.1"}
	}
	certs := filepath.Join(proj, "deploy", "certs")
	if err := devcerts.Generate(certs, leaves, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The key files are the nodes' (root in their containers); ca.pem is public.
	env := []string{"OKTA_HOOK_SECRET=" + hookSecret, "AUDIT_TOKEN=" + auditToken, "SCIM_TOKEN=" + scimToken,
		"NATS_WORKER_PASSWORD=compose-worker-password-0123", "NATS_ADMIN_PASSWORD=compose-admin-password-0123",
		"WORKER_CONFIG=worker-demo.yaml", "PUBLIC_URL=http://localhost:8080"}
	compose := func(args ...string) string {
		// podman-compose 1.0.3 has no --profile and starts every service.
		return run(t, proj, env, "podman-compose", append([]string{"-p", project, "-f", "docker-compose.yml", "-f", "deploy/compose.ci.yml"}, args...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"worker-1", "worker-2", "nats-1", "demo-as"} {
				out, _ := exec.Command("podman", "logs", "--tail", "30", project+"_"+c+"_1").CombinedOutput()
				t.Logf("%s:\n%s", c, out)
			}
		}
		cmd := exec.Command("podman-compose", "-p", project, "-f", "docker-compose.yml", "-f", "deploy/compose.ci.yml", "down", "-v")
		cmd.Dir, cmd.Env = proj, append(os.Environ(), env...)
		_ = cmd.Run()
	})
	upAt := time.Now()
	compose("up", "-d")

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(certs, "ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ready := func(url string) bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	eventually(t, 4*time.Minute, "both replicas ready", func() bool {
		return ready("http://127.0.0.1:8080/readyz") && ready("http://127.0.0.1:8081/readyz")
	})
	t.Logf("both replicas ready %s after compose up (%s after the start of the test, builds included)", time.Since(upAt).Round(time.Second), time.Since(start).Round(time.Second))

	hook := func(port int, users ...string) {
		t.Helper()
		var evs []string
		for _, u := range users {
			evs = append(evs, fmt.Sprintf(`{"uuid":"compose-%s","published":"2026-11-30T10:00:00.000Z","eventType":"user.lifecycle.deactivate","outcome":{"result":"SUCCESS"},
				"actor":{"id":"00uadmin","type":"User","alternateId":"admin@example.com"},"target":[{"id":"00u%s","type":"User","alternateId":"%s"}]}`, u, u, u))
		}
		body := `{"eventType":"com.okta.event_hook","data":{"events":[` + strings.Join(evs, ",") + `]}}`
		eventually(t, 2*time.Minute, "the hook accepted", func() bool { // Okta retries a 5xx; so do we
			req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/hooks/okta", port), strings.NewReader(body))
			req.Header.Set("Authorization", hookSecret)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	scim := func(port int, method, path, body string) map[string]any {
		t.Helper()
		var out map[string]any
		var status int
		// An IdP retries a 5xx (the cluster may still be electing the
		// leaders of its streams and buckets right after start); so do we.
		eventually(t, 2*time.Minute, "SCIM "+method+" "+path+" answered", func() bool {
			req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/scim/v2%s", port, path), strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+scimToken)
			req.Header.Set("Content-Type", "application/scim+json")
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			out = nil
			_ = json.NewDecoder(resp.Body).Decode(&out)
			status = resp.StatusCode
			return status < 500
		})
		if status >= 300 {
			t.Fatalf("SCIM %s %s: %d %v", method, path, status, out)
		}
		return out
	}
	succeeded := func() map[string]int {
		resp, err := client.Get("https://127.0.0.1:9443/succeeded")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var m map[string]int
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}

	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("a%d@example.com", i))
	}
	hook(8080, want...)
	u := scim(8081, http.MethodPost, "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"scim@example.com","active":true,
		"emails":[{"value":"scim@example.com","primary":true}]}`)
	scim(8081, http.MethodPatch, "/Users/"+u["id"].(string), `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`)
	want = append(want, "scim@example.com")

	// A node and replica A go away mid-run; B takes more hooks.
	run(t, proj, nil, "podman", "stop", "-t", "2", project+"_nats-2_1")
	run(t, proj, nil, "podman", "stop", "-t", "10", project+"_worker-1_1")
	var more []string
	for i := range 5 {
		more = append(more, fmt.Sprintf("b%d@example.com", i))
	}
	hook(8081, more...)
	want = append(want, more...)
	run(t, proj, nil, "podman", "start", project+"_nats-2_1")
	run(t, proj, nil, "podman", "start", project+"_worker-1_1")

	eventually(t, 4*time.Minute, "every revocation at the demo authorization server", func() bool {
		got := succeeded()
		for _, w := range want {
			if got[w] == 0 {
				return false
			}
		}
		return true
	})
	got := succeeded()
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("%s revoked %d times, want once", w, got[w])
		}
	}

	// Both indexes verify and end at the same chain head.
	type verified struct {
		Records uint64 `json:"records"`
		HeadSeq uint64 `json:"head_seq"`
		Head    string `json:"head_hash"`
	}
	verify := func(worker string) (verified, string) {
		cmd := exec.Command("podman", "exec", project+"_"+worker+"_1", "/lifecycle-worker", "audit", "verify", "--config", "/etc/lifecycle-worker/worker.yaml",
			"--public-key", "/var/lib/lifecycle-worker/keys/checkpoint-key.pub.pem", "--json")
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var v verified
		_ = json.Unmarshal(out.Bytes(), &v)
		if err != nil {
			return v, fmt.Sprintf("%v: %s %s", err, out.String(), errb.String())
		}
		return v, ""
	}
	var a, b verified
	var problem string
	eventually(t, 3*time.Minute, "both indexes verified at the same head", func() bool {
		var pa, pb string
		a, pa = verify("worker-1")
		b, pb = verify("worker-2")
		problem = pa + pb
		return problem == "" && a.HeadSeq > 0 && a == b
	})
	t.Logf("both indexes: %d records, head %d %s; whole run %s", a.Records, a.HeadSeq, a.Head[:16], time.Since(start).Round(time.Second))
}
