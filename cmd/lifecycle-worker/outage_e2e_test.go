package main

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// freeAddr reserves a loopback address for a server that starts later.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d@example.com", prefix, i)
	}
	return out
}

// postUsers deactivates users in deliveries of 50.
func (w *worker) postUsers(delivery string, us []string) {
	w.t.Helper()
	for i := 0; i < len(us); i += 50 {
		if resp := w.postHook(deactivation(fmt.Sprintf("%s-%d", delivery, i), us[i:min(i+50, len(us))]...), testHookSecret); resp.StatusCode != 200 {
			w.t.Fatalf("delivery %d: %d", i, resp.StatusCode)
		}
	}
}

// One of five targets refuses connections while 1,000 users are
// deactivated: the other four finish while it is down; when it comes back
// its jobs complete with no manual step, none dead-lettered.
func TestTargetOutageIsIsolatedAndRecovers(t *testing.T) {
	up := make([]*gtrtest.Receiver, 4)
	var targets string
	for i := range up {
		up[i] = gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
		defer up[i].Close()
		targets += gtrTarget(fmt.Sprintf("up%d", i), up[i].URL, "email")
	}
	downAddr := freeAddr(t)
	downURL := "http://" + downAddr + "/global-token-revocation"
	down := gtrTarget("down", downURL, "email")
	down = strings.Replace(down, "max_attempts: 5", "max_attempts: 50\n    breaker: { failures: 3, cooldown: 100ms, max_cooldown: 400ms }", 1)
	w := startWorker(t, testConfig(t, t.TempDir(), targets+down))
	for _, r := range up {
		setJWKS(r, w)
	}
	us := users("out", 1000)
	w.postUsers("outage", us)
	eventually(t, 120*time.Second, "the four live targets to finish", func() bool {
		for _, r := range up {
			if r.SucceededSubjects() != len(us) {
				return false
			}
		}
		return true
	})
	if n := len(w.audit(audit.Filter{Target: "down", Type: string(audit.TypeRevocationSucceeded)})); n != 0 {
		t.Fatalf("%d revocations succeeded at a target that refuses connections", n)
	}

	back := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Listen: downAddr})
	defer back.Close()
	setJWKS(back, w)
	eventually(t, 120*time.Second, "the recovered target to finish", func() bool { return back.SucceededSubjects() == len(us) })
	w.idle(60 * time.Second)
	if n := w.streamMsgs(bus.StreamDLQ); n != 0 {
		t.Errorf("%d jobs dead-lettered during an outage shorter than the retry budget", n)
	}
	if n := len(w.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})); n != 5*len(us) {
		t.Errorf("%d revocation.succeeded records, want %d", n, 5*len(us))
	}
	// The breaker held most jobs: far fewer failed attempts than jobs.
	failed := len(w.audit(audit.Filter{Target: "down", Type: string(audit.TypeRevocationAttempted)}))
	t.Logf("failed attempts at the down target: %d for %d jobs", failed, len(us))
	if failed >= len(us) {
		t.Errorf("%d failed attempts for %d jobs: the breaker did not hold them", failed, len(us))
	}
}

// An outage longer than the retry budget dead-letters the jobs, with their
// attempt history; dlq replay completes them once the target is back.
func TestOutageLongerThanBudgetThenReplay(t *testing.T) {
	addr := freeAddr(t)
	target := gtrTarget("flaky", "http://"+addr+"/global-token-revocation", "email")
	target = strings.Replace(target, "max_attempts: 5", "max_attempts: 3\n    breaker: { failures: 1000 }", 1)
	cfg := testConfig(t, t.TempDir(), target)
	cfg.Audit.Tokens = append(cfg.Audit.Tokens, config.TokenConfig{Token: testOperatorToken, Role: config.RoleOperator})
	w := startWorker(t, cfg)
	us := users("long", 40)
	w.postUsers("long", us)
	eventually(t, 60*time.Second, "every job dead-lettered", func() bool { return w.streamMsgs(bus.StreamDLQ) == uint64(len(us)) })

	var out, errb bytes.Buffer
	if code := cli([]string{"dlq", "list", "--url", w.url, "--token", testAuditToken, "--json"}, &out, &errb); code != 0 ||
		strings.Count(out.String(), `"history":[{"n":1`) != len(us) || !strings.Contains(out.String(), `"n":3`) {
		t.Fatalf("dead letters without their attempt history: exit %d %s %s", code, out.String()[:min(600, out.Len())], errb.String())
	}

	back := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Listen: addr})
	defer back.Close()
	setJWKS(back, w)
	out.Reset()
	if code := cli([]string{"dlq", "replay", "--url", w.url, "--token", testOperatorToken}, &out, &errb); code != 0 {
		t.Fatalf("replay: exit %d %s", code, errb.String())
	}
	eventually(t, 60*time.Second, "replayed jobs to succeed", func() bool { return back.SucceededSubjects() == len(us) })
	w.idle(30 * time.Second)
	if n := w.streamMsgs(bus.StreamDLQ); n != 0 {
		t.Errorf("DLQ still holds %d", n)
	}
}

// A target that answers after 30 s is cut off by its timeout and retried,
// and delays no other target.
func TestSlowTargetIsCutOffAndIsolated(t *testing.T) {
	slow := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Delay: 30 * time.Second})
	defer slow.Close()
	fast := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer fast.Close()
	slowT := strings.Replace(gtrTarget("slow", slow.URL, "email"), "timeout: 5s", "timeout: 300ms\n    breaker: { cooldown: 100ms, max_cooldown: 200ms }", 1)
	w := startWorker(t, testConfig(t, t.TempDir(), slowT+gtrTarget("fast", fast.URL, "email")))
	setJWKS(slow, w)
	setJWKS(fast, w)
	us := users("slow", 20)
	w.postUsers("slow", us)
	eventually(t, 30*time.Second, "the fast target to finish", func() bool { return fast.SucceededSubjects() == len(us) })
	eventually(t, 30*time.Second, "retried timeouts at the slow target", func() bool {
		recs := w.audit(audit.Filter{Target: "slow", Type: string(audit.TypeRevocationAttempted)})
		retried := 0
		for _, r := range recs {
			if r.Error != "timed out" {
				t.Fatalf("slow target attempt: %+v", r)
			}
			if r.Attempt >= 2 {
				retried++
			}
		}
		return retried > 0
	})
	if n := len(slow.Requests()); n != 0 {
		t.Errorf("the slow target completed %d requests within its 300ms timeout", n)
	}
}
