// Command bench measures a mass offboarding end to end: it starts the worker
// (its own process, embedded NATS, fresh data dir) and K loopback Global
// Token Revocation receivers that verify every JWT, deactivates N users
// through Okta hook deliveries of B events, C at a time, waits until every
// (user, target) revocation is confirmed and indexed, and then measures in
// the same run the ceilings of the parts underneath: (a) the same requests
// sent straight to the receivers, (b) raw JetStream publish + consume, (c) raw
// SQLite batched inserts. Pipeline figures are printed as ratios to them.
//
//	go run ./bench                      # N=10000 K=10 B=50 C=8
//	go run ./bench -users 1000 -json
//	go run ./bench -curve               # N = 1k, 10k, 50k: how cost grows with work
//	go run ./bench -curve -curve-svg docs/bench-curve.svg
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// workerEnv is added to the worker's environment (-worker-env).
var workerEnv []string

// Report is the whole result, also the -json output.
type Report struct {
	Scenario  Scenario           `json:"scenario"`
	Pipeline  Pipeline           `json:"pipeline"`
	Ceilings  map[string]Ceiling `json:"ceilings"`
	Ratios    map[string]float64 `json:"ratios"`
	GoVersion string             `json:"go_version"`
	CPUs      int                `json:"cpus"`
	At        time.Time          `json:"at"`
}

func main() {
	if k := os.Getenv(receiversEnv); k != "" {
		if err := serveReceivers(k); err != nil {
			fatal(err)
		}
		return
	}
	if os.Getenv(floorEnv) != "" {
		if err := serveFloor(); err != nil {
			fatal(err)
		}
		return
	}
	var s Scenario
	flag.IntVar(&s.Users, "users", 10000, "N: users deactivated")
	flag.IntVar(&s.Targets, "targets", 10, "K: authorization servers")
	flag.IntVar(&s.Batch, "batch", 50, "B: events per hook delivery")
	flag.IntVar(&s.Senders, "senders", 8, "C: hook deliveries in flight")
	flag.IntVar(&s.Concurrency, "target-concurrency", 8, "jobs in flight per target (worker config and ceiling a)")
	flag.Float64Var(&s.Rate, "rate", 0, "pace hook deliveries at this many per second (0: as fast as the senders go)")
	flag.BoolVar(&s.RandomSubjects, "random-subjects", false, "scatter the users' IDs, emails and event IDs over their range, as an IdP's are, instead of numbering them in the order they are deactivated (the audit indexes then take keys anywhere)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	flag.BoolVar(&pipelineOnly, "pipeline-only", false, "run the pipeline and skip the ceilings (for comparing builds or settings of the worker quickly; no ratios)")
	flag.BoolVar(&natsOwnProcess, "nats-server", false, "with -pipeline-only: run NATS as a process of its own (nats-server of the worker's version, loopback) instead of embedded, and report its memory and CPU apart from the worker's")
	keep := flag.Bool("keep", false, "keep the work dir")
	exportN := flag.Int("audit-export", 0, "instead: fill an audit index with this many records and time exporting it (jsonl, csv, ocsf) and subject queries")
	flag.Func("worker-env", "KEY=VALUE for the worker's environment only (e.g. GOGC=50); repeatable", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE")
		}
		workerEnv = append(workerEnv, v)
		return nil
	})
	flag.StringVar(&pprofAddr, "pprof", "", "start the worker with --pprof ADDR and save a 20 s CPU profile and a heap profile of the run into the work dir, and CPU profiles of the whole runs of floor (d) and of (f) (floor-cpu.pprof, plainly-cpu.pprof)")
	curve := flag.Bool("curve", false, "run the scenario at each of -curve-users and print how throughput, time to revoke, memory and CPU grow with N")
	curveUsers := flag.String("curve-users", "1000,10000,50000", "N of each curve point")
	curveSVG := flag.String("curve-svg", "", "with -curve: also draw the curve as an SVG into this file")
	curveFrom := flag.String("curve-from", "", "with -curve: print (and with -curve-svg draw) the curve saved in this file by -curve -json, instead of running it")
	flag.Parse()
	if natsOwnProcess && (!pipelineOnly || *curve) {
		fatal(errors.New("-nats-server needs -pipeline-only: the floors embed their server"))
	}

	dir, err := os.MkdirTemp("", "lw-bench-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	progress := io.Writer(os.Stderr)
	if *exportN > 0 {
		rep, err := runExport(context.Background(), *exportN, dir, progress)
		if err != nil {
			fatal(err)
		}
		if *asJSON {
			_ = json.NewEncoder(os.Stdout).Encode(rep)
		} else {
			printExport(os.Stdout, rep)
		}
		return
	}
	if *curve {
		var c *Curve
		if *curveFrom != "" {
			c, err = readCurve(*curveFrom)
		} else {
			c, err = runCurve(context.Background(), s, *curveUsers, dir, progress)
		}
		if err != nil {
			fatal(err)
		}
		if *curveSVG != "" {
			if err := os.WriteFile(*curveSVG, []byte(curveSVGOf(c)), 0o644); err != nil {
				fatal(err)
			}
		}
		if *asJSON {
			printJSON(c)
			return
		}
		printCurve(os.Stdout, c)
		return
	}
	rep, err := run(context.Background(), s, dir, progress)
	if err != nil {
		fatal(err)
	}
	if *asJSON {
		printJSON(rep)
		return
	}
	printReport(os.Stdout, rep)
}

func printJSON(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// pipelineOnly skips the ceilings (-pipeline-only).
var pipelineOnly bool

// run does the pipeline run and then the ceilings.
func run(ctx context.Context, s Scenario, dir string, progress io.Writer) (*Report, error) {
	rep := &Report{Scenario: s, Ceilings: map[string]Ceiling{}, Ratios: map[string]float64{}, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), At: time.Now().UTC()}
	fmt.Fprintf(progress, "pipeline: %d users x %d targets\n", s.Users, s.Targets)
	p, receivers, cleanup, err := runPipeline(ctx, s, dir, progress)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return nil, err
	}
	rep.Pipeline = p
	if p.Rejected > 0 {
		return nil, fmt.Errorf("receivers rejected %d requests from the worker: %v", p.Rejected, p.RejectReasons)
	}
	if pipelineOnly {
		return rep, nil
	}

	fmt.Fprintln(progress, "ceiling (a): direct GTR requests")
	a, err := ceilingHTTP(ctx, s, dir, receivers)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "floor (d): direct GTR requests, each with one durable, indexed audit record")
	d, err := runFloor(ctx, "d", s, dir, receivers)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "(f): the pipeline's guarantees, plainly: (d) with each event, its receipt and its jobs durable first, jobs consumed from REVOKE")
	f, err := runFloor(ctx, "f", s, dir, receivers)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "floor (e): the same deliveries to the worker with no targets")
	e, err := floorIntake(ctx, s, p.bin, dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "ceiling (b): raw JetStream")
	b, err := ceilingJetStream(ctx, s.Users*s.Targets, dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "ceiling (c): raw SQLite")
	c, err := ceilingSQLite(ctx, s, p.AuditRows, dir)
	if err != nil {
		return nil, err
	}
	rep.Ceilings["a_direct_gtr_requests"] = a
	rep.Ceilings["b_jetstream_pub_consume"] = b
	rep.Ceilings["c_sqlite_batched_inserts"] = c
	rep.Ceilings["d_floor_requests_with_one_record"] = d
	rep.Ceilings["e_intake_alone"] = e
	rep.Ceilings["f_guarantees_plainly"] = f
	rep.Ratios["revocations_vs_f"] = p.RevocationsPerS / f.PerS
	rep.Ratios["f_vs_a"] = f.PerS / a.PerS
	rep.Ratios["time_to_revoke_p99_vs_f"] = p.TimeToRevokeMS.P99 / f.TimeToRevokeMS.P99
	rep.Ratios["peak_rss_vs_f"] = p.PeakRSSMB / f.PeakRSSMB
	rep.Ratios["peak_rss_not_file_vs_f"] = (p.PeakRSSMB - p.RSSFileMB) / (f.PeakRSSMB - f.RSSFileMB)
	rep.Ratios["cpu_vs_f"] = p.CPUSeconds / f.CPUSeconds
	rep.Ratios["hook_p99_vs_e"] = p.WorkerHookMS.P99 / max(e.WorkerHookMS.P99, 1e-9)
	rep.Ratios["revocations_vs_a"] = p.RevocationsPerS / a.PerS
	rep.Ratios["revocations_vs_d"] = p.RevocationsPerS / d.PerS
	rep.Ratios["d_vs_a"] = d.PerS / a.PerS
	rep.Ratios["time_to_revoke_p99_vs_d"] = p.TimeToRevokeMS.P99 / d.TimeToRevokeMS.P99
	rep.Ratios["time_to_revoke_p99_vs_a"] = p.TimeToRevokeMS.P99 / a.TimeToRevokeMS.P99
	rep.Ratios["peak_rss_vs_d"] = p.PeakRSSMB / d.PeakRSSMB
	// Without the binaries' own pages (a bigger binary is not memory the
	// run took; file-backed RSS stays the same all run long).
	rep.Ratios["peak_rss_not_file_vs_d"] = (p.PeakRSSMB - p.RSSFileMB) / (d.PeakRSSMB - d.RSSFileMB)
	rep.Ratios["cpu_vs_d"] = p.CPUSeconds / d.CPUSeconds
	rep.Ratios["revocations_vs_b"] = p.RevocationsPerS / b.PerS
	rep.Ratios["audit_rows_vs_c"] = p.AuditRowsPerS / c.PerS
	return rep, nil
}

func printReport(w io.Writer, r *Report) {
	s, p := r.Scenario, r.Pipeline
	pace := "unpaced"
	if s.Rate > 0 {
		pace = fmt.Sprintf("paced at %.1f deliveries/s", s.Rate)
	}
	fmt.Fprintf(w, "lifecycle-worker benchmark — N=%d users, K=%d targets, B=%d events/delivery, C=%d senders (%s), %d per target; %s, %d CPUs\n\n",
		s.Users, s.Targets, s.Batch, s.Senders, pace, s.Concurrency, r.GoVersion, r.CPUs)
	where := "embedded NATS"
	if p.NATSServer != nil {
		where = "NATS in a process of its own"
	}
	fmt.Fprintf(w, "pipeline (worker process, %s, fresh data dir)\n", where)
	fmt.Fprintf(w, "  hook deliveries          %d in %.2fs = %.1f/s; response p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		p.Deliveries, p.DeliverySeconds, p.DeliveriesPerS, p.HookMS.P50, p.HookMS.P99, p.HookMS.Max)
	fmt.Fprintf(w, "  hook answer at the worker p50 %.1f ms, p99 %.1f ms (its histogram); %.1f%% within 20 ms\n",
		p.WorkerHookMS.P50, p.WorkerHookMS.P99, 100*p.WorkerHookMS.Within20)
	fmt.Fprintf(w, "  revocations end to end   %d in %.2fs = %.0f/s\n", p.Revocations, p.Seconds, p.RevocationsPerS)
	fmt.Fprintf(w, "  time to revoke           p50 %.0f ms, p99 %.0f ms, max %.0f ms (hook receipt -> AS answered)\n",
		p.TimeToRevokeMS.P50, p.TimeToRevokeMS.P99, p.TimeToRevokeMS.Max)
	fmt.Fprintf(w, "  audit rows indexed       %d = %.0f/s; indexer lag max %d ms\n", p.AuditRows, p.AuditRowsPerS, p.IndexLagMaxMS)
	fmt.Fprintf(w, "  worker peak RSS          %.0f MB (%.0f MB started and at rest, before the first delivery; %.0f MB file-backed: its binary's pages)\n", p.PeakRSSMB, p.RestRSSMB, p.RSSFileMB)
	fmt.Fprintf(w, "  worker CPU               %.1f s = %.2f s per 1000 revocations\n", p.CPUSeconds, p.CPUPer1000)
	fmt.Fprintf(w, "  receivers CPU            %.1f s (the K test authorization servers, own process, same cores)\n", p.ReceiversCPUSeconds)
	if n := p.NATSServer; n != nil {
		fmt.Fprintf(w, "  NATS server              peak RSS %.0f MB (%.0f MB file-backed), CPU %.1f s (its own process, same cores)\n", n.PeakRSSMB, n.RSSFileMB, n.CPUSeconds)
	}
	stall := ""
	if p.CoresBusy < 0.8*float64(runtime.NumCPU()) {
		stall = "; well under the cores: a stall, or the machine taken from the run"
	}
	fmt.Fprintf(w, "  cores busy               %.2f of %d (all of the above, first delivery -> all indexed%s)\n", p.CoresBusy, runtime.NumCPU(), stall)
	fmt.Fprintln(w)
	if len(r.Ceilings) == 0 {
		return
	}
	fmt.Fprintln(w, "ceilings (same machine, same run)                         pipeline / ceiling")
	a, b, c, d := r.Ceilings["a_direct_gtr_requests"], r.Ceilings["b_jetstream_pub_consume"], r.Ceilings["c_sqlite_batched_inserts"], r.Ceilings["d_floor_requests_with_one_record"]
	fmt.Fprintf(w, "  (a) direct GTR requests    %7d in %6.2fs = %8.0f/s    revocations/s  %.2f\n", a.Count, a.Seconds, a.PerS, r.Ratios["revocations_vs_a"])
	handed := "if all N×K are handed over at once"
	if s.Rate > 0 {
		handed = "from each delivery's K×B requests handed over at the same pace"
	}
	fmt.Fprintf(w, "      time to revoke p99 %s: %.0f ms     time to revoke p99  %.2f\n", handed, a.TimeToRevokeMS.P99, r.Ratios["time_to_revoke_p99_vs_a"])
	fmt.Fprintf(w, "  (d) floor: (a) + 1 record  %7d in %6.2fs = %8.0f/s    revocations/s  %.2f   (d is %.2f of a)\n", d.Count, d.Seconds, d.PerS, r.Ratios["revocations_vs_d"], r.Ratios["d_vs_a"])
	fmt.Fprintf(w, "      each request's record durable and indexed before it counts; time to revoke p99 %.0f ms   time to revoke p99  %.2f\n", d.TimeToRevokeMS.P99, r.Ratios["time_to_revoke_p99_vs_d"])
	fmt.Fprintf(w, "      its own process (embedded NATS, index, signing): peak RSS %.0f MB (%.0f file-backed), CPU %.1f s   peak RSS %.2f (not file-backed %.2f), CPU %.2f\n", d.PeakRSSMB, d.RSSFileMB, d.CPUSeconds, r.Ratios["peak_rss_vs_d"], r.Ratios["peak_rss_not_file_vs_d"], r.Ratios["cpu_vs_d"])
	if f, ok := r.Ceilings["f_guarantees_plainly"]; ok {
		fmt.Fprintf(w, "  (f) the guarantees, plainly %5d in %6.2fs = %8.0f/s    revocations/s  %.2f   (f is %.2f of a)\n", f.Count, f.Seconds, f.PerS, r.Ratios["revocations_vs_f"], r.Ratios["f_vs_a"])
		fmt.Fprintf(w, "      (d) + events, receipts and jobs durable first, jobs consumed from REVOKE, none of the pipeline's machinery; time to revoke p99 %.0f ms   time to revoke p99  %.2f\n", f.TimeToRevokeMS.P99, r.Ratios["time_to_revoke_p99_vs_f"])
		fmt.Fprintf(w, "      its own process: peak RSS %.0f MB (%.0f file-backed), CPU %.1f s   peak RSS %.2f (not file-backed %.2f), CPU %.2f\n", f.PeakRSSMB, f.RSSFileMB, f.CPUSeconds, r.Ratios["peak_rss_vs_f"], r.Ratios["peak_rss_not_file_vs_f"], r.Ratios["cpu_vs_f"])
	}
	if e := r.Ceilings["e_intake_alone"]; e.WorkerHookMS != nil {
		fmt.Fprintf(w, "  (e) intake alone           %7d deliveries in %.2fs to the worker with no targets: hook answer at the worker p50 %.1f ms, p99 %.1f ms, %.1f%% within 20 ms    hook p99  %.2f\n",
			e.Count, e.Seconds, e.WorkerHookMS.P50, e.WorkerHookMS.P99, 100*e.WorkerHookMS.Within20, r.Ratios["hook_p99_vs_e"])
	}
	fmt.Fprintf(w, "  (b) JetStream pub+consume  %7d in %6.2fs = %8.0f/s    revocations/s  %.2f\n", b.Count, b.Seconds, b.PerS, r.Ratios["revocations_vs_b"])
	fmt.Fprintf(w, "  (c) SQLite batched insert  %7d in %6.2fs = %8.0f/s    audit rows/s   %.2f\n", c.Count, c.Seconds, c.PerS, r.Ratios["audit_rows_vs_c"])
}
