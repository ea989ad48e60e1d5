package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// scenario is a small, fixed trail: a deactivation revoked at one target
// after a retry, not applicable at a second, dead-lettered at a third.
func scenario(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := OpenStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := func(sec int) time.Time { return time.Date(2026, 11, 20, 9, 0, sec, 0, time.UTC) }
	occurred := at(0)
	jane := &Subject{Issuer: "https://acme.okta.com", ID: "00ujane", Login: "jane@example.com", Email: "jane@example.com"}
	ev := "okta:7f0c"
	recs := []Record{
		{ID: ev + "/received", Time: at(1), Type: TypeEventReceived, EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: jane,
			Outcome: "accepted", OccurredAt: &occurred, Detail: json.RawMessage(`{"event_type":"user.lifecycle.deactivate","received_at":"2026-11-20T09:00:01Z"}`)},
		{ID: ev + "/planned", Time: at(1), Type: TypeRevocationPlanned, EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: jane,
			Outcome: "planned", OccurredAt: &occurred, Detail: json.RawMessage(`{"targets":["linear","notion","wiki"]}`)},
		{ID: ev + "|linear/attempt/1", Time: at(2), Type: TypeRevocationAttempted, EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: jane,
			Target: "linear", Driver: "gtr", Attempt: 1, Outcome: "retry", HTTPStatus: 503, LatencyMS: 12, Error: "HTTP 503", OccurredAt: &occurred},
		{ID: ev + "|linear/succeeded", Time: at(4), Type: TypeRevocationSucceeded, EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: jane,
			Target: "linear", Driver: "gtr", Attempt: 2, Outcome: "succeeded", HTTPStatus: 204, LatencyMS: 9, OccurredAt: &occurred,
			Detail: json.RawMessage(`{"sub_id_format":"email","time_to_revoke_ms":3000,"exposed_until":"2026-11-20T10:00:04Z"}`)},
		{ID: ev + "|notion/not_applicable", Time: at(2), Type: TypeRevocationNotApplicable, EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: jane,
			Target: "notion", Driver: "gtr", Attempt: 1, Outcome: "not_applicable", HTTPStatus: 404, LatencyMS: 7, Error: "HTTP 404", OccurredAt: &occurred},
		{ID: ev + "|wiki/dead_lettered", Time: at(3), Type: TypeRevocationDeadLettered, EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: jane,
			Target: "wiki", Driver: "httpcall", Attempt: 1, Outcome: "dead_lettered", HTTPStatus: 401, LatencyMS: 5, Error: "permanent: HTTP 401", OccurredAt: &occurred},
		{ID: "okta-hook/1", Time: at(5), Type: TypeAuthFailed, Source: "okta-hook", Outcome: "rejected", Error: "missing or wrong hook secret"},
	}
	var entries []Entry
	for i, r := range recs {
		e, err := NewEntry(uint64(i+1), r)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if err := s.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExportGolden(t *testing.T) {
	path := scenario(t)
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, format := range []string{"jsonl", "csv", "ocsf"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := r.Export(context.Background(), &buf, format, Filter{}); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "export."+format+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/audit -run TestExportGolden -update)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s export differs from %s:\n%s", format, golden, buf.String())
			}
			if format != "ocsf" {
				return
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 5 { // the receipt and four revocation records
				t.Errorf("%d OCSF events, want 5", len(lines))
			}
			for _, line := range lines {
				var ev map[string]any
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"class_uid", "activity_id", "time", "user", "status_id"} {
					if _, ok := ev[k]; !ok {
						t.Errorf("OCSF event without %s: %s", k, line)
					}
				}
			}
		})
	}
}
