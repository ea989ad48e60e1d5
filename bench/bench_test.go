package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the benchmark's receivers and floor
// processes too.
func TestMain(m *testing.M) {
	if k := os.Getenv(receiversEnv); k != "" {
		if err := serveReceivers(k); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(floorEnv) != "" {
		if err := serveFloor(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A tiny run of the whole benchmark, so that it cannot rot: every
// revocation must arrive, verified, and be indexed. It asserts no timing.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker")
	}
	// The last delivery has one event, so its jobs travel as single-job
	// messages, not batches. Subjects scattered, so that the worker, (d)
	// and (f) run on that path too (TestRandomSubjectsAreABijection holds
	// the mapping itself).
	s := Scenario{Users: 29, Targets: 2, Batch: 7, Senders: 2, Concurrency: 4, RandomSubjects: true}
	rep, err := run(context.Background(), s, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pipeline.Revocations != 58 || rep.Pipeline.Rejected != 0 || rep.Pipeline.Deliveries != 5 || rep.Pipeline.RSSFileMB == 0 || rep.Pipeline.CoresBusy <= 0 {
		t.Errorf("pipeline %+v", rep.Pipeline)
	}
	for name, c := range rep.Ceilings {
		if c.Count == 0 {
			t.Errorf("ceiling %s measured nothing", name)
		}
	}
	if a := rep.Ceilings["a_direct_gtr_requests"]; a.TimeToRevokeMS == nil || a.TimeToRevokeMS.Max == 0 {
		t.Errorf("ceiling (a) has no time to revoke: %+v", a)
	}
	if d := rep.Ceilings["d_floor_requests_with_one_record"]; d.PeakRSSMB == 0 || d.CPUSeconds == 0 || d.RSSFileMB == 0 {
		t.Errorf("floor (d) did not report its process: %+v", d)
	}
	// (f) checks itself that every receipt and record was indexed and every
	// batch acked; here, that it ran in its own process over all N×K.
	if f := rep.Ceilings["f_guarantees_plainly"]; f.Count != 58 || f.PeakRSSMB == 0 || f.CPUSeconds == 0 || f.TimeToRevokeMS == nil || f.TimeToRevokeMS.Max == 0 {
		t.Errorf("(f) did not report its process: %+v", f)
	}
	if e := rep.Ceilings["e_intake_alone"]; e.WorkerHookMS == nil || e.WorkerHookMS.Requests != 5 {
		t.Errorf("floor (e) did not report the worker's hook answers: %+v", e)
	}
	printReport(io.Discard, rep)
}

// With -nats-server the worker talks to NATS in a process of its own: it
// embeds no server (no store in its data dir), every revocation still
// arrives and is indexed, and the server's figures are reported apart.
func TestPipelineWithNATSApart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker and nats-server")
	}
	natsOwnProcess, pipelineOnly = true, true
	defer func() { natsOwnProcess, pipelineOnly = false, false }()
	dir := t.TempDir()
	s := Scenario{Users: 30, Targets: 2, Batch: 7, Senders: 2, Concurrency: 4}
	rep, err := run(context.Background(), s, dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pipeline.Revocations != 60 || rep.Pipeline.Rejected != 0 || len(rep.Ceilings) != 0 {
		t.Errorf("pipeline %+v, ceilings %v", rep.Pipeline, rep.Ceilings)
	}
	if n := rep.Pipeline.NATSServer; n == nil || n.PeakRSSMB == 0 || n.CPUSeconds == 0 {
		t.Errorf("nats-server's process not reported: %+v", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "nats")); !os.IsNotExist(err) {
		t.Errorf("the worker kept an embedded store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nats-store", "jetstream")); err != nil {
		t.Errorf("nats-server's store: %v", err)
	}
	printReport(io.Discard, rep)
}

// Paced, (a) hands each delivery's users over when the hook deliveries go.
func TestCeilingReleasesUsersLikeTheDeliveries(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	paced := Scenario{Batch: 50, Rate: 0.5}
	for u, want := range map[int]time.Duration{0: 0, 49: 0, 50: 2 * time.Second, 99: 2 * time.Second, 100: 4 * time.Second} {
		if got := releaseAt(paced, start, u).Sub(start); got != want {
			t.Errorf("paced user %d: %v, want %v", u, got, want)
		}
	}
	if got := releaseAt(Scenario{Batch: 50}, start, 1000); !got.Equal(start) {
		t.Errorf("unpaced user 1000 at %v, want all at the start", got.Sub(start))
	}
}

// The export measurement runs end to end on a small trail.
func TestExportSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker")
	}
	rep, err := runExport(context.Background(), 2400, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"jsonl", "csv", "ocsf"} {
		if rep.Exports[f].OutBytes == 0 {
			t.Errorf("%s export wrote nothing", f)
		}
	}
	printExport(io.Discard, rep)
}

// The curve's drawing is well-formed SVG with a point per N.
func TestCurveSVG(t *testing.T) {
	c := &Curve{Points: []CurvePoint{
		{Users: 1000, RevocationsPerS: 3000, PeakRSSMB: 90, Report: &Report{Ceilings: map[string]Ceiling{"a_direct_gtr_requests": {PerS: 6000}}}},
		{Users: 10000, RevocationsPerS: 4000, PeakRSSMB: 140, Report: &Report{Ceilings: map[string]Ceiling{"a_direct_gtr_requests": {PerS: 7000}}}},
	}}
	svg := curveSVGOf(c)
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
	}
	if !strings.Contains(svg, "N=1000") || !strings.Contains(svg, "N=10000") {
		t.Errorf("no N labels: %s", svg)
	}
}

// A curve saved by -curve -json is drawn again without running it; points
// saved before the floor's RSS had a column take it from their report.
func TestCurveFromFile(t *testing.T) {
	saved := `{"points":[{"users":1000,"revocations_per_s":3000,"peak_rss_mb":90,
		"report":{"ceilings":{"d_floor_requests_with_one_record":{"count":1,"seconds":1,"per_s":1,"peak_rss_mb":66}}}}]}`
	path := filepath.Join(t.TempDir(), "curve.json")
	if err := os.WriteFile(path, []byte(saved), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := readCurve(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Points) != 1 || c.Points[0].FloorRSSMB != 66 || c.Points[0].PeakRSSMB != 90 {
		t.Fatalf("read %+v", c.Points)
	}
	if _, err := readCurve(filepath.Join(t.TempDir(), "absent.json")); err == nil {
		t.Fatal("a missing file read as a curve")
	}
}

// With -random-subjects every user has a subject number of its own, and
// (f) finds the user again from it.
func TestRandomSubjectsAreABijection(t *testing.T) {
	for _, s := range []Scenario{{}, {RandomSubjects: true}} {
		seen := map[int]bool{}
		for u := range 100_000 {
			n := s.subject(u)
			if n < 0 || n >= subjectSpace || seen[n] || s.user(n) != u {
				t.Fatalf("random %v: user %d has subject %d (seen %v), back to %d", s.RandomSubjects, u, n, seen[n], s.user(n))
			}
			seen[n] = true
		}
	}
	if s := (Scenario{RandomSubjects: true}); s.subject(1)-s.subject(0) == 1 {
		t.Fatal("not scattered")
	}
}
