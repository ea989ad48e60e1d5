package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// The scim driver, end to end, with our own SCIM service provider as the
// application: a deactivation from the IdP reaches the worker as an Okta
// hook; its scim target finds the user at the application by userName and
// deactivates them there (which the application's own trail records as a
// deprovisioning it was told of); a second delivery finds them inactive
// and is not applicable.
func TestSCIMPushDeactivatesAtTheApplication(t *testing.T) {
	appCfg := testConfig(t, t.TempDir(), "")
	appCfg.SCIM.Tokens = []string{testSCIMToken}
	app := startWorker(t, appCfg)
	id := app.scimUser("dana@example.com", "dana@example.com", "00udana")
	app.scimUser("other@example.com", "other@example.com", "00uother")

	target := fmt.Sprintf(`  - name: notes-app
    driver: scim
    endpoint: %s/scim/v2
    allow_insecure_http: true
    auth: { type: bearer, token: %q }
    scim: { action: deactivate, match: [userName, email] }
    backoff: [20ms]
`, app.url, testSCIMToken)
	w := startWorker(t, testConfig(t, t.TempDir(), target))
	if resp := w.postHook(deactivation("push-1", "dana@example.com"), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "the revocation at the application", func() bool {
		return len(w.audit(audit.Filter{Target: "notes-app", Type: string(audit.TypeRevocationSucceeded)})) == 1
	})
	code, u := app.scim("GET", "/Users/"+id, "", testSCIMToken)
	if code != 200 || u["active"] != false {
		t.Fatalf("at the application: %d %v", code, u)
	}
	eventually(t, 30*time.Second, "the application's own record of the deactivation", func() bool {
		return len(app.audit(audit.Filter{Subject: "dana@example.com", Type: string(audit.TypeEventReceived)})) >= 1
	})
	if code, other := app.scim("GET", "/Users?filter=userName%20eq%20%22other@example.com%22", "", testSCIMToken); code != 200 || fmt.Sprint(other["Resources"]) == "" {
		t.Fatalf("other user: %d %v", code, other)
	} else if res := other["Resources"].([]any); res[0].(map[string]any)["active"] != true {
		t.Errorf("another user was touched: %v", res)
	}

	if resp := w.postHook(deactivation("push-2", "dana@example.com"), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "the second deactivation is not applicable", func() bool {
		return len(w.audit(audit.Filter{Target: "notes-app", Type: string(audit.TypeRevocationNotApplicable)})) == 1
	})
}
