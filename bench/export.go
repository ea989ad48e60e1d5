package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// ExportReport is what -audit-export measured.
type ExportReport struct {
	Records        int                `json:"records"`
	GenerateSecs   float64            `json:"generate_seconds"`
	DBBytes        int64              `json:"db_bytes"`
	Exports        map[string]Process `json:"exports"`
	SubjectQueryMS Quantile           `json:"subject_query_ms"`
}

// Process is one run of the worker binary.
type Process struct {
	Seconds   float64 `json:"seconds"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	OutBytes  int64   `json:"out_bytes"`
}

// runExport fills a fresh index with n records shaped like a real trail
// (received, planned and outcomes for users at 10 targets), then times the
// worker's `audit export` of all of it in each format as its own process
// (peak RSS from rusage), and queries for single subjects.
func runExport(ctx context.Context, n int, dir string, progress io.Writer) (*ExportReport, error) {
	rep := &ExportReport{Records: n, Exports: map[string]Process{}}
	dataDir := filepath.Join(dir, "export-data")
	db := filepath.Join(dataDir, "audit.db")
	store, err := audit.OpenStore(ctx, db)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "generating %d records\n", n)
	start := time.Now()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	users := max(n/12, 1)
	batch := make([]audit.Entry, 0, 1000)
	for seq := 1; seq <= n; seq++ {
		u := (seq - 1) / 12
		i := (seq - 1) % 12
		ev := fmt.Sprintf("okta:gen-%08d", u)
		sub := &audit.Subject{Issuer: "https://acme.okta.com", ID: fmt.Sprintf("00u%08d", u), Login: fmt.Sprintf("user%08d@example.com", u), Email: fmt.Sprintf("user%08d@example.com", u)}
		occurred := base.Add(time.Duration(u) * time.Second)
		rec := audit.Record{Time: occurred.Add(time.Duration(i) * 10 * time.Millisecond), EventID: ev, Source: "okta-hook", Kind: "deprovisioned", Subject: sub, OccurredAt: &occurred}
		switch i {
		case 0:
			rec.ID, rec.Type, rec.Outcome = ev+"/received", audit.TypeEventReceived, "accepted"
			rec.Detail = json.RawMessage(`{"event_type":"user.lifecycle.deactivate"}`)
		case 1:
			rec.ID, rec.Type, rec.Outcome = ev+"/planned", audit.TypeRevocationPlanned, "planned"
			rec.Detail = json.RawMessage(`{"targets":["as0","as1","as2","as3","as4","as5","as6","as7","as8","as9"]}`)
		default:
			t := fmt.Sprintf("as%d", i-2)
			rec.ID, rec.Type, rec.Outcome, rec.Target, rec.Driver = ev+"|"+t+"/succeeded", audit.TypeRevocationSucceeded, "succeeded", t, "gtr"
			rec.Attempt, rec.HTTPStatus, rec.LatencyMS = 1, 204, 12
			rec.Detail = json.RawMessage(`{"sub_id_format":"email","time_to_revoke_ms":120}`)
		}
		e, err := audit.NewEntry(uint64(seq), rec)
		if err != nil {
			return nil, err
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) || seq == n {
			if err := store.Append(ctx, batch); err != nil {
				return nil, err
			}
			batch = batch[:0]
		}
	}
	if err := store.Checkpoint(ctx); err != nil {
		return nil, err
	}
	store.Close()
	rep.GenerateSecs = time.Since(start).Seconds()
	if fi, err := os.Stat(db); err == nil {
		rep.DBBytes = fi.Size()
	}

	bin, err := buildWorker(ctx, dir)
	if err != nil {
		return nil, err
	}
	for _, format := range []string{"jsonl", "csv", "ocsf"} {
		fmt.Fprintf(progress, "exporting %s\n", format)
		out := filepath.Join(dir, "export."+format)
		f, err := os.Create(out)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, bin, "audit", "export", "--data-dir", dataDir, "--format", format)
		cmd.Stdout, cmd.Stderr = f, os.Stderr
		t0 := time.Now()
		err = cmd.Run()
		secs := time.Since(t0).Seconds()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", format, err)
		}
		p := Process{Seconds: secs}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.PeakRSSMB = float64(ru.Maxrss) / 1024 // KiB on Linux
		}
		if fi, err := os.Stat(out); err == nil {
			p.OutBytes = fi.Size()
		}
		os.Remove(out)
		rep.Exports[format] = p
	}

	r, err := audit.OpenReader(db)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var lat []float64
	for range 50 {
		u := rand.IntN(users)
		t0 := time.Now()
		recs, err := r.Query(ctx, audit.Filter{Subject: fmt.Sprintf("user%08d@example.com", u)})
		if err != nil {
			return nil, err
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		if len(recs) == 0 {
			return nil, fmt.Errorf("subject query found nothing")
		}
	}
	sort.Float64s(lat)
	rep.SubjectQueryMS = quantiles(lat)
	return rep, nil
}

func printExport(w io.Writer, r *ExportReport) {
	fmt.Fprintf(w, "audit trail of %d records (%.0f MB SQLite, generated in %.1fs)\n", r.Records, float64(r.DBBytes)/1e6, r.GenerateSecs)
	for _, f := range []string{"jsonl", "csv", "ocsf"} {
		p := r.Exports[f]
		fmt.Fprintf(w, "  export %-5s  %6.1fs  %8.0f records/s  %6.0f MB out  peak RSS %4.0f MB\n", f, p.Seconds, float64(r.Records)/p.Seconds, float64(p.OutBytes)/1e6, p.PeakRSSMB)
	}
	fmt.Fprintf(w, "  subject query  p50 %.2f ms, p99 %.2f ms, max %.2f ms (50 random subjects)\n", r.SubjectQueryMS.P50, r.SubjectQueryMS.P99, r.SubjectQueryMS.Max)
}
