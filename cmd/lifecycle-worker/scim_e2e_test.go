package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus/stores"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/scim/scimtest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

const testSCIMToken = "scim-token-for-tests-0123456789"

func (w *worker) scim(method, path, body, token string) (int, map[string]any) {
	w.t.Helper()
	req, _ := http.NewRequest(method, w.url+"/scim/v2"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/scim+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (w *worker) scimUser(userName, email, externalID string) string {
	w.t.Helper()
	code, u := w.scim("POST", "/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":%q,"externalId":%q,
		"name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":%q,"type":"work"}],"active":true}`, userName, externalID, email), testSCIMToken)
	if code != 201 {
		w.t.Fatalf("create %s: %d %v", userName, code, u)
	}
	return u["id"].(string)
}

// Each deactivation an IdP sends — Okta's path-less PATCH, Okta's PUT, the
// three Entra bodies, DELETE — gives exactly one deprovisioned event with
// the user as subject and a revocation at the target.
func TestSCIMDeactivations(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	cfg.SCIM.Tokens = []string{testSCIMToken}
	w := startWorker(t, cfg)
	setJWKS(peer, w)

	const patch = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[%s]}`
	cases := []struct {
		name   string
		method string
		body   string
		status int
	}{
		{"okta patch", "PATCH", fmt.Sprintf(patch, `{"op":"replace","value":{"active":false}}`), 200},
		{"okta put", "PUT", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"%s","name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":"%s","type":"work"}],"active":false}`, 200},
		{"entra default", "PATCH", fmt.Sprintf(patch, `{"op":"Replace","path":"active","value":"False"}`), 200},
		{"entra compliant", "PATCH", fmt.Sprintf(patch, `{"op":"replace","path":"active","value":false}`), 200},
		{"entra tutorial", "PATCH", `{"Operations":[{"op":"Replace","path":"active","value":false}],"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`, 200},
		{"delete", "DELETE", "", 204},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			userName := fmt.Sprintf("user%d@corp.example", i)
			id := w.scimUser(userName, userName, fmt.Sprintf("00uext%d", i))
			body := c.body
			if c.method == "PUT" {
				body = fmt.Sprintf(body, userName, userName)
			}
			if code, out := w.scim(c.method, "/Users/"+id, body, testSCIMToken); code != c.status {
				t.Fatalf("%s: %d %v", c.method, code, out)
			}
			eventually(t, 20*time.Second, "the revocation", func() bool { return peer.Succeeded()[userName] == 1 })
			w.idle(20 * time.Second)
			recs := w.audit(audit.Filter{Subject: userName, Type: string(audit.TypeEventReceived)})
			if len(recs) != 1 || recs[0].Kind != "deprovisioned" || recs[0].Subject.ID != fmt.Sprintf("00uext%d", i) || recs[0].Source != "scim" {
				t.Errorf("received records %+v, want one deprovisioned from scim with the externalId as subject id", recs)
			}
			if c.method != "DELETE" {
				code, u := w.scim("GET", "/Users/"+id, "", testSCIMToken)
				if code != 200 || u["active"] != false {
					t.Errorf("inactive user must stay readable: %d %v", code, u)
				}
			}
		})
	}
	if n := len(peer.Requests()); n != len(cases) {
		t.Errorf("%d revocations for %d deactivations", n, len(cases))
	}
}

// Refused requests change nothing, publish nothing, and are on record.
func TestSCIMRefusals(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "")
	cfg.SCIM.Tokens = []string{testSCIMToken}
	w := startWorker(t, cfg)
	id := w.scimUser("jane@corp.example", "jane@corp.example", "00ujane")
	before := w.streamMsgs(bus.StreamLifecycle)
	for _, c := range []struct {
		name, method, path, body, token string
		status                          int
		scimType                        string
	}{
		{"invalid filter", "GET", `/Users?filter=userName%20eq%20j`, "", testSCIMToken, 400, "invalidFilter"},
		{"unknown path", "PATCH", "/Users/" + id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"favouriteColour","value":"red"}]}`, testSCIMToken, 400, "invalidPath"},
		{"malformed json", "PATCH", "/Users/" + id, `{"Operations":[{"op":"replace",`, testSCIMToken, 400, "invalidSyntax"},
		{"wrong token", "PATCH", "/Users/" + id, `{"Operations":[{"op":"replace","path":"active","value":false}]}`, "not-the-token-0123456789", 401, ""},
		{"duplicate userName", "POST", "/Users", `{"userName":"JANE@corp.example"}`, testSCIMToken, 409, "uniqueness"},
		{"stale version", "PATCH", "/Users/" + id, `{"Operations":[{"op":"replace","path":"active","value":false}]}`, testSCIMToken, 412, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, w.url+"/scim/v2"+c.path, bytes.NewReader([]byte(c.body)))
			req.Header.Set("Authorization", "Bearer "+c.token)
			if c.name == "stale version" {
				req.Header.Set("If-Match", `W/"999"`)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != c.status || e["status"] != fmt.Sprint(c.status) || (c.scimType != "" && e["scimType"] != c.scimType) ||
				resp.Header.Get("Content-Type") != "application/scim+json" {
				t.Errorf("%d %v (%s), want %d %s", resp.StatusCode, e, resp.Header.Get("Content-Type"), c.status, c.scimType)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if code, u := w.scim("GET", "/Users/"+id, "", testSCIMToken); code != 200 || u["active"] != true {
		t.Errorf("a refused request changed the user: %v", u)
	}
	w.idle(20 * time.Second)
	if n := w.streamMsgs(bus.StreamLifecycle); n != before {
		t.Errorf("refused requests published %d events", n-before)
	}
	if n := len(w.audit(audit.Filter{Type: string(audit.TypeEventRejected)})) + len(w.audit(audit.Filter{Type: string(audit.TypeAuthFailed)})); n < 6 {
		t.Errorf("%d refusals on record, want 6", n)
	}
}

// Removing a member from a group revokes only at the targets whose scope
// names that group — by Okta's path filter or Entra's value list — and
// deleting the group does the same for everyone left in it.
func TestSCIMGroupRemovalIsScoped(t *testing.T) {
	inScope := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer inScope.Close()
	other := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer other.Close()
	scoped := strings.Replace(gtrTarget("mcp", inScope.URL, "email"), "max_attempts: 5\n",
		"max_attempts: 5\n    kinds: [deprovisioned, access_removed]\n    scope: { groups: [\"MCP users\"] }\n", 1)
	unscoped := strings.Replace(gtrTarget("crm", other.URL, "email"), "max_attempts: 5\n",
		"max_attempts: 5\n    kinds: [deprovisioned, access_removed]\n    scope: { groups: [\"CRM users\"] }\n", 1)
	cfg := testConfig(t, t.TempDir(), scoped+unscoped)
	cfg.SCIM.Tokens = []string{testSCIMToken}
	w := startWorker(t, cfg)
	setJWKS(inScope, w)
	setJWKS(other, w)
	a := w.scimUser("ann@corp.example", "ann@corp.example", "00uann")
	b := w.scimUser("ben@corp.example", "ben@corp.example", "00uben")
	c := w.scimUser("cal@corp.example", "cal@corp.example", "00ucal")
	code, g := w.scim("POST", "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"MCP users",
		"members":[{"value":%q},{"value":%q},{"value":%q}]}`, a, b, c), testSCIMToken)
	if code != 201 {
		t.Fatalf("create group: %d %v", code, g)
	}
	gid := g["id"].(string)
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[%s]}`
	if code, out := w.scim("PATCH", "/Groups/"+gid, fmt.Sprintf(patch, fmt.Sprintf(`{"op":"remove","path":"members[value eq \"%s\"]"}`, a)), testSCIMToken); code != 204 {
		t.Fatalf("okta member removal: %d %v", code, out)
	}
	if code, out := w.scim("PATCH", "/Groups/"+gid, fmt.Sprintf(patch, fmt.Sprintf(`{"op":"Remove","path":"members","value":[{"value":"%s"}]}`, b)), testSCIMToken); code != 204 {
		t.Fatalf("entra member removal: %d %v", code, out)
	}
	eventually(t, 20*time.Second, "ann and ben revoked at the scoped target", func() bool {
		s := inScope.Succeeded()
		return s["ann@corp.example"] == 1 && s["ben@corp.example"] == 1
	})
	if code, _ := w.scim("DELETE", "/Groups/"+gid, "", testSCIMToken); code != 204 {
		t.Fatalf("delete group: %d", code)
	}
	eventually(t, 20*time.Second, "cal revoked when the group went", func() bool { return inScope.Succeeded()["cal@corp.example"] == 1 })
	w.idle(20 * time.Second)
	if n := len(other.Requests()); n != 0 {
		t.Errorf("the target scoped to another group revoked %d times", n)
	}
	if n := len(inScope.Requests()); n != 3 {
		t.Errorf("%d revocations at the scoped target, want 3", n)
	}
}

// The NATS KV store of SCIM resources keeps the contract every store
// keeps (internal/events/scim/scimtest).
func TestSCIMKVStoreConformance(t *testing.T) {
	w := startWorker(t, testConfig(t, t.TempDir(), ""))
	kv, err := w.inst.bus.KV(context.Background(), bus.KVSCIM)
	if err != nil {
		t.Fatal(err)
	}
	scimtest.RunStore(t, stores.SCIM{KV: kv, Prefix: "conformance"})
}
