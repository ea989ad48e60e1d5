package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// startCluster runs a three-node NATS JetStream cluster in this process, on
// loopback, and returns its nodes once JetStream has a meta leader.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	nodes := make([]*server.Server, 3)
	for i := range nodes {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "lw-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("node %d not ready", i+1)
		}
		nodes[i] = s
	}
	eventually(t, 30*time.Second, "a JetStream meta leader with three peers", func() bool {
		for _, s := range nodes {
			if s.JetStreamIsLeader() {
				return len(s.JetStreamClusterPeers()) == 3
			}
		}
		return false
	})
	return nodes
}

// clusterNode starts a worker on the cluster with R3 streams, the given
// roles ("" for all) and the signing key every node shares.
func clusterNode(t *testing.T, nodes []*server.Server, keyFile, roles, targets string) *worker {
	t.Helper()
	var urls []string
	for _, s := range nodes {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	embedded := false
	cfg := testConfig(t, t.TempDir(), targets)
	cfg.NATS.Embedded, cfg.NATS.URLs, cfg.NATS.Replicas = &embedded, urls, 3
	cfg.Keys.SigningKeyFile = keyFile
	if roles == "" {
		roles = strings.Join(config.AllRoles, ",")
	}
	if err := cfg.SetRoles(roles); err != nil {
		t.Fatal(err)
	}
	return startWorker(t, cfg)
}

// postHookRetrying delivers like Okta does, retrying a 5xx (Okta retries
// once; the System Log backstop stands in for the rest).
func postHookRetrying(t *testing.T, w *worker, body []byte) {
	t.Helper()
	eventually(t, 60*time.Second, "hook accepted", func() bool {
		return w.postHook(body, testHookSecret).StatusCode == http.StatusOK
	})
}

// Two replicas on a three-node JetStream cluster with R3 streams share the
// work as competing consumers. A NATS node dies half way; the replicas
// reconnect, and nothing accepted is lost: every revocation lands, none is
// on record twice, both audit indexes — each its own projection of the one
// AUDIT stream — end with the same hash chain head, and both replicas'
// metrics count the whole trail.
func TestReplicasOnAJetStreamCluster(t *testing.T) {
	nodes := startCluster(t)
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	keyFile := filepath.Join(t.TempDir(), "signing-key.pem") // replicas share the key the ASes trust
	targets := gtrTarget("as1", peer.URL, "email") + gtrTarget("as2", peer.URL, "iss_sub")
	a := clusterNode(t, nodes, keyFile, "", targets)
	b := clusterNode(t, nodes, keyFile, "", targets)
	setJWKS(peer, a)

	users := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%02d@example.com", prefix, i))
		}
		return out
	}
	postHookRetrying(t, a, deactivation("ca", users("ca", 15)...))
	postHookRetrying(t, b, deactivation("cb", users("cb", 15)...))

	// A node dies: a stream leader or follower, and some clients' server.
	nodes[0].Shutdown()
	postHookRetrying(t, a, deactivation("cc", users("cc", 15)...))
	postHookRetrying(t, b, deactivation("cd", users("cd", 15)...))

	a.idle(90 * time.Second)
	b.idle(90 * time.Second)

	const jobs = 60 * 2
	got := peer.Succeeded()
	for _, u := range append(append(users("ca", 15), users("cb", 15)...), append(users("cc", 15), users("cd", 15)...)...) {
		if got[u] < 1 {
			t.Errorf("%s never revoked at as1", u)
		}
	}
	ra, rb := a.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)}), b.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})
	if len(ra) != jobs || len(rb) != jobs {
		t.Errorf("revocation.succeeded records: %d in a's index, %d in b's, want %d", len(ra), len(rb), jobs)
	}
	// Each replica's metrics count the whole trail, from its own index.
	for name, w := range map[string]*worker{"a": a, "b": b} {
		m := w.scrape()
		n := m[`lw_revocations_total{outcome="succeeded",target="as1"}`] + m[`lw_revocations_total{outcome="succeeded",target="as2"}`]
		if n != jobs || m[`lw_events_total{kind="deprovisioned",result="accepted",source="okta-hook"}`] != 60 {
			t.Errorf("%s's metrics: %v revocations, %v events; want %d, 60", name, n, m[`lw_events_total{kind="deprovisioned",result="accepted",source="okta-hook"}`], jobs)
		}
	}
	ha, hb := head(t, a), head(t, b)
	if ha.HeadSeq == 0 || ha.HeadSeq != hb.HeadSeq || ha.Head != hb.Head || ha.Problem != nil || hb.Problem != nil {
		t.Errorf("index heads differ or are broken: a %+v, b %+v", ha, hb)
	}
	// The streams really are replicated three ways.
	nc, err := nats.Connect(nodes[1].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	for _, name := range []string{"LIFECYCLE", "REVOKE", "REVOKE_DLQ", "AUDIT"} {
		si, err := js.StreamInfo(name)
		if err != nil || si.Config.Replicas != 3 {
			t.Errorf("stream %s: %+v %v", name, si, err)
		}
	}
}

func head(t *testing.T, w *worker) audit.VerifyResult {
	t.Helper()
	r, err := audit.OpenReader(w.inst.cfg.Audit.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Verify(context.Background(), audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The roles split one worker over processes (docs/architecture.md, Roles): an intake node
// takes the hook, a pipeline node revokes, an audit node indexes and
// answers queries. Each serves only its own routes.
func TestRolesSplitAcrossProcesses(t *testing.T) {
	nodes := startCluster(t)
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	keyFile := filepath.Join(t.TempDir(), "signing-key.pem")
	node := func(roles string) *worker {
		return clusterNode(t, nodes, keyFile, roles, gtrTarget("as1", peer.URL, "email"))
	}
	intake, pipeline, auditNode := node("intake"), node("pipeline"), node("audit")
	setJWKS(peer, intake) // any node serves the shared key

	for _, c := range []struct {
		w            *worker
		method, path string
		want         int
	}{
		{pipeline, "POST", "/hooks/okta", 404}, {auditNode, "POST", "/hooks/okta", 404}, {auditNode, "POST", "/ssf/events", 404},
		{intake, "GET", "/v1/audit/records", 404}, {pipeline, "GET", "/v1/dlq", 404}, {auditNode, "GET", "/v1/audit/records", 200},
		{intake, "GET", "/metrics", 200}, {pipeline, "GET", "/metrics", 200}, {pipeline, "GET", "/.well-known/jwks.json", 200},
	} {
		if got := c.w.status(c.method, c.path, testAuditToken); got != c.want {
			t.Errorf("%s %s on %v: %d, want %d", c.method, c.path, c.w.inst.cfg.Roles, got, c.want)
		}
	}

	postHookRetrying(t, intake, deactivation("roles", "gil@example.com", "hal@example.com"))
	auditNode.idle(60 * time.Second)
	if ok := peer.Succeeded(); ok["gil@example.com"] != 1 || ok["hal@example.com"] != 1 {
		t.Fatalf("AS saw %v", ok)
	}
	recs := auditNode.audit(audit.Filter{Subject: "gil@example.com"})
	if n := countTypes(recs); n[audit.TypeEventReceived] != 1 || n[audit.TypeRevocationSucceeded] != 1 {
		t.Errorf("gil's trail on the audit node: %v", n)
	}
	if m := auditNode.scrape(); m[`lw_revocations_total{outcome="succeeded",target="as1"}`] != 2 {
		t.Errorf("audit node counts %v revocations", m[`lw_revocations_total{outcome="succeeded",target="as1"}`])
	}
	if m := intake.scrape(); m[`lw_intake_requests_total{code="200",endpoint="okta_hook"}`] < 1 {
		t.Error("intake node did not count the hook it answered")
	}
}
