package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// newman runs Okta's SCIM 2.0 SPEC test against our service provider, with
// one user seeded the way an IdP would (POST); every assertion must pass.
func TestOktaSCIMSpecCollection(t *testing.T) {
	dir, _ := filepath.Abs("../../test/scim")
	newman := filepath.Join(dir, "node_modules", ".bin", "newman")
	if _, err := os.Stat(newman); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("newman is not installed in %s (run npm ci there): %v", dir, err)
		}
		t.Skip("newman not installed: run `npm ci --prefix test/scim`")
	}
	cfg := testConfig(t, t.TempDir(), "")
	cfg.SCIM.Tokens = []string{testSCIMToken}
	w := startWorker(t, cfg)
	seeded := w.scimUser("isv.user@corp.example", "isv.user@corp.example", "00uisv")

	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(newman, "run", filepath.Join(dir, "okta-scim-spec.postman.json"),
		"--env-var", "SCIMBaseURL="+w.url+"/scim/v2", "--env-var", "auth=Bearer "+testSCIMToken,
		"--env-var", "ISVUserid="+seeded, "--env-var", "InvalidUserEmail=nobody.at.all@corp.example",
		"--env-var", "UserIdThatDoesNotExist=010101001010101010101010",
		"--reporters", "cli,json", "--reporter-json-export", report, "--disable-unicode", "--color", "off")
	out, err := cmd.CombinedOutput()
	raw, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("newman: %v\n%s", err, out)
	}
	var rep struct {
		Run struct {
			Stats struct {
				Assertions struct{ Total, Failed int } `json:"assertions"`
				Requests   struct{ Total, Failed int } `json:"requests"`
			} `json:"stats"`
			Failures []struct {
				Error struct {
					Test    string `json:"test"`
					Message string `json:"message"`
				} `json:"error"`
				Source struct {
					Name string `json:"name"`
				} `json:"source"`
			} `json:"failures"`
		} `json:"run"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	s := rep.Run.Stats
	t.Logf("Okta SCIM SPEC test: %d requests, %d assertions, %d failed", s.Requests.Total, s.Assertions.Total, s.Assertions.Failed)
	for _, f := range rep.Run.Failures {
		t.Errorf("%s: %s: %s", f.Source.Name, f.Error.Test, f.Error.Message)
	}
	if s.Assertions.Total < 40 || s.Assertions.Failed != 0 {
		t.Errorf("assertions %d, failed %d\n%s", s.Assertions.Total, s.Assertions.Failed, out)
	}
}
