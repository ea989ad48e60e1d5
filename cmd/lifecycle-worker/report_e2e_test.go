package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// Three targets, one refusing: the report marks the user incomplete, names
// the target and the reason, and its totals add up; the API agrees.
func TestOffboardingReport(t *testing.T) {
	ok := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer ok.Close()
	refusing := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(int, map[string]string) int { return 403 }})
	defer refusing.Close()
	dir := t.TempDir()
	targets := gtrTarget("alpha", ok.URL, "email") + gtrTarget("beta", ok.URL, "email") + gtrTarget("gamma", refusing.URL, "email")
	targets = strings.Replace(targets, "max_attempts: 5\n", "max_attempts: 5\n    max_token_lifetime: 1h\n", 1) // alpha declares its lifetime
	cfg := testConfig(t, dir, targets)
	w := startWorker(t, cfg)
	setJWKS(ok, w)
	setJWKS(refusing, w)
	w.postHook(deactivation("rep", "ann@example.com", "bob@example.com"), testHookSecret)
	w.idle(30 * time.Second)

	cfgFile := filepath.Join(dir, "config.yaml")
	writeConfig(t, cfgFile, cfg.DataDir)
	var out, errb bytes.Buffer
	if code := cli([]string{"audit", "report", "--config", cfgFile, "--since", "1h", "--sla", "1h", "--format", "json"}, &out, &errb); code != 0 {
		t.Fatalf("report: exit %d: %s", code, errb.String())
	}
	var rep audit.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report json: %v\n%s", err, out.String())
	}
	tot := rep.Totals
	if tot.Offboardings != 2 || tot.Incomplete != 2 || tot.Complete != 0 || tot.OutsideSLA != 2 || tot.Targets != 6 ||
		tot.Succeeded != 4 || tot.DeadLettered != 2 || tot.Succeeded+tot.NotApplicable+tot.DeadLettered+tot.Pending != tot.Targets ||
		tot.Complete+tot.Incomplete != tot.Offboardings || len(rep.Offboardings) != tot.Offboardings {
		t.Errorf("totals do not add up: %+v (%d listed)", tot, len(rep.Offboardings))
	}
	for _, o := range rep.Offboardings {
		if o.Status != "incomplete" || o.ReceivedAt == nil || o.OccurredAt == nil || len(o.Targets) != 3 || !o.ExposureUnknown {
			t.Errorf("offboarding %+v", o)
		}
		for _, tg := range o.Targets {
			switch tg.Target {
			case "gamma":
				if tg.Status != "dead_lettered" || tg.HTTPStatus != 403 || !strings.Contains(tg.Error, "permanent") {
					t.Errorf("gamma: %+v", tg)
				}
			case "alpha":
				if tg.Status != "succeeded" || tg.ExposedUntil == nil || tg.ExposedUntil.Sub(*tg.ConfirmedAt) != time.Hour {
					t.Errorf("alpha: %+v", tg)
				}
			default:
				if tg.Status != "succeeded" || tg.ConfirmedAt == nil || tg.TimeToRevokeMS == nil {
					t.Errorf("%s: %+v", tg.Target, tg)
				}
			}
		}
	}

	out.Reset()
	if code := cli([]string{"audit", "report", "--config", cfgFile, "--sla", "1h"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "gamma: dead_lettered (permanent: HTTP 403") || !strings.Contains(out.String(), "| 2 | 0 | 2 | 0 | 2 | 6 | 4 | 0 | 2 | 0 |") {
		t.Errorf("markdown report:\n%s", out.String())
	}
	out.Reset()
	if code := cli([]string{"audit", "report", "--config", cfgFile, "--format", "csv"}, &out, &errb); code != 0 || strings.Count(out.String(), "\n") != 7 {
		t.Errorf("csv report (want header + 6 rows):\n%s", out.String())
	}

	req, _ := http.NewRequest("GET", w.url+"/v1/offboardings?status=incomplete&sla=1h", nil)
	req.Header.Set("Authorization", "Bearer "+testAuditToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var api struct {
		Totals       audit.Totals        `json:"totals"`
		Offboardings []audit.Offboarding `json:"offboardings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&api); err != nil || api.Totals != tot {
		t.Errorf("API totals %+v (%v), want %+v", api.Totals, err, tot)
	}
	one, _ := http.NewRequest("GET", w.url+"/v1/offboardings/"+api.Offboardings[0].EventID, nil)
	one.Header.Set("Authorization", "Bearer "+testAuditToken)
	resp2, err := http.DefaultClient.Do(one)
	if err != nil || resp2.StatusCode != 200 {
		t.Fatalf("GET one offboarding: %v %v", err, resp2.StatusCode)
	}
	resp2.Body.Close()

	// The export streams every record; OCSF carries the 2 receipts and the
	// 6 revocation outcomes (403 is permanent: one attempt each).
	exp, _ := http.NewRequest("GET", w.url+"/v1/audit/export?format=ocsf", nil)
	exp.Header.Set("Authorization", "Bearer "+testAuditToken)
	resp3, err := http.DefaultClient.Do(exp)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp3.Body)
	resp3.Body.Close()
	if resp3.Header.Get("Content-Type") != "application/x-ndjson" || strings.Count(string(body), `"class_uid":3001`) != 2 ||
		strings.Count(string(body), `"class_uid":3005`) != 6 {
		t.Errorf("ocsf export (%s):\n%s", resp3.Header.Get("Content-Type"), body)
	}
	out.Reset()
	if code := cli([]string{"audit", "export", "--config", cfgFile, "--format", "jsonl", "--subject", "ann@example.com"}, &out, &errb); code != 0 ||
		strings.Count(out.String(), "\n") != 5 { // received, planned, 3 outcomes
		t.Errorf("jsonl export of ann:\n%s", out.String())
	}
}
