package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// Scenario is one benchmark run's shape.
type Scenario struct {
	Users       int     // N: users deactivated
	Targets     int     // K: authorization servers
	Batch       int     // B: events per hook delivery
	Senders     int     // C: hook deliveries in flight
	Concurrency int     // per-target concurrency of the worker
	Rate        float64 // hook deliveries per second; 0 = unpaced
	// RandomSubjects scatters the users' IDs, emails and event IDs over
	// their range, as an IdP's are, instead of numbering them in the order
	// they are deactivated: every index of the audit trail then takes its
	// keys anywhere, not at its end.
	RandomSubjects bool `json:",omitempty"`
}

// A bijection of [0, subjectSpace): u·scatterMul + scatterAdd, inverted by
// scatterInv (scatterMul's inverse modulo subjectSpace).
const (
	subjectSpace = 10_000_000 // the users' numbers have seven digits
	scatterMul   = 7919
	scatterAdd   = 1_234_567
	scatterInv   = 17679
)

// subject is the number in user u's IDs, email and event ID: u itself, or
// with RandomSubjects a bijection of it.
func (s Scenario) subject(u int) int {
	if !s.RandomSubjects {
		return u
	}
	return (u*scatterMul + scatterAdd) % subjectSpace
}

// user is the user whose subject number is n.
func (s Scenario) user(n int) int {
	if !s.RandomSubjects {
		return n
	}
	return (n - scatterAdd + subjectSpace) % subjectSpace * scatterInv % subjectSpace
}

const (
	hookSecret = "bench-hook-secret-0123456789"
	publicURL  = "https://lw.bench.example"
)

// Pipeline is what the end-to-end run measured.
type Pipeline struct {
	Deliveries      int      `json:"deliveries"`
	DeliverySeconds float64  `json:"delivery_seconds"`
	DeliveriesPerS  float64  `json:"deliveries_per_s"`
	HookMS          Quantile `json:"hook_response_ms"`
	// WorkerHookMS is the hook answer time as the worker measured it (its
	// lw_intake_request_duration_seconds histogram): the same requests
	// without the senders' own waits on this shared machine.
	WorkerHookMS    WorkerHook `json:"worker_hook_ms"`
	Revocations     int        `json:"revocations"`
	Seconds         float64    `json:"seconds"`
	RevocationsPerS float64    `json:"revocations_per_s"`
	TimeToRevokeMS  Quantile   `json:"time_to_revoke_ms"`
	IndexLagMaxMS   int64      `json:"audit_index_lag_max_ms"`
	AuditRows       int        `json:"audit_rows"`
	AuditRowsPerS   float64    `json:"audit_rows_per_s"`
	PeakRSSMB       float64    `json:"peak_rss_mb"`
	// RestRSSMB is the worker's peak RSS at rest, started and ready,
	// before the first delivery: what the run added is the difference.
	RestRSSMB float64 `json:"rest_rss_mb"`
	// RSSFileMB is the part of RSS backed by files at the end (mostly the
	// binary's own pages, the same all run long): the rest is the memory
	// the run itself took.
	RSSFileMB     float64  `json:"rss_file_mb"`
	CPUSeconds    float64  `json:"cpu_seconds"`
	CPUPer1000    float64  `json:"cpu_seconds_per_1000_revocations"`
	Rejected      int      `json:"requests_rejected_by_receivers"`
	RejectReasons []string `json:"reject_reasons,omitempty"`
	// The receivers' own process (the K test authorization servers), which
	// shares the machine with the worker.
	ReceiversCPUSeconds float64 `json:"receivers_cpu_seconds"`
	// NATSServer is NATS's own process, when it runs apart (-nats-server):
	// the worker's figures are then its own only.
	NATSServer *Usage `json:"nats_server,omitempty"`
	// CoresBusy is the CPU the worker, the receivers (and NATS apart) used
	// from the first delivery until everything was indexed, per second of
	// that time: near the machine's cores when the run is CPU-bound, well
	// under them when it stalled or the machine was taken from it.
	CoresBusy float64 `json:"cores_busy"`

	bin string // the worker binary, for floor (e)
}

// Usage is what a process of the run took: its peak RSS, the part of its
// RSS backed by files (its binary's pages), and the CPU it spent.
type Usage struct {
	PeakRSSMB  float64 `json:"peak_rss_mb,omitempty"`
	RSSFileMB  float64 `json:"rss_file_mb,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

// Quantile is p50/p99/max of a sample.
type Quantile struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func quantiles(xs []float64) Quantile {
	if len(xs) == 0 {
		return Quantile{}
	}
	sort.Float64s(xs)
	at := func(q float64) float64 { return xs[min(len(xs)-1, int(q*float64(len(xs))))] }
	return Quantile{P50: at(0.50), P99: at(0.99), Max: xs[len(xs)-1]}
}

// worker is the lifecycle-worker process under test.
type worker struct {
	cmd  *exec.Cmd
	url  string
	dir  string
	done chan error
}

// buildWorker compiles the worker binary into dir.
func buildWorker(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "lifecycle-worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/lifecycle-worker/lifecycle-worker/cmd/lifecycle-worker")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build worker: %w", err)
	}
	return bin, nil
}

// startWorker runs the binary on a fresh data dir with one GTR target per
// receiver, and waits until it serves.
func startWorker(ctx context.Context, bin, dir string, receivers *receiverSet, s Scenario, nats *natsServer) (*worker, error) {
	var targets strings.Builder
	for i, url := range receivers.URLs {
		fmt.Fprintf(&targets, `  - name: as%d
    driver: gtr
    endpoint: %s
    subject_format: email
    allow_insecure_http: true
    concurrency: %d
    backoff: [100ms, 1s]
`, i, url, s.Concurrency)
	}
	if len(receivers.URLs) == 0 {
		targets.WriteString("  []\n")
	}
	targets.WriteString("audit:\n  tokens: [{ token: " + benchAuditToken + ", role: auditor }]\n")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:%d
public_url: %s
log: { level: warn, format: json }
okta:
  org_url: https://acme.okta.com
  hook: { secrets: [%q] }
targets:
`, filepath.Join(dir, "data"), port, publicURL, hookSecret) + targets.String() + nats.workerConfig()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	args := []string{"serve", "--config", cfgPath}
	if pprofAddr != "" {
		args = append(args, "--pprof", pprofAddr)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=2"), workerEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, dir: dir, done: make(chan error, 1), url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	go func() {
		// The worker logs warnings and errors only; pass them on.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(os.Stderr, "worker:", sc.Text())
		}
	}()
	go func() { w.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(w.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-w.done:
			return nil, fmt.Errorf("worker exited at start: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, errors.New("worker not ready within 60s")
		}
	}
	return w, nil
}

// stop ends the worker gracefully.
func (w *worker) stop() error {
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-w.done:
		return err
	case <-time.After(60 * time.Second):
		_ = w.cmd.Process.Kill()
		return errors.New("worker did not stop within 60s")
	}
}

// procStats reads a process's CPU seconds, peak RSS and file-backed
// resident memory now (RssFile: its binary's pages and other mapped files;
// clean, shared, and given back under pressure without swapping) from
// /proc.
func procStats(pid int) (cpu, peakRSSMB, rssFileMB float64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may contain spaces).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) > 12 {
			ut, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			name, rest, _ := strings.Cut(line, ":")
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			switch name {
			case "VmHWM":
				peakRSSMB = kb / 1024
			case "RssFile":
				rssFileMB = kb / 1024
			}
		}
	}
	return cpu, peakRSSMB, rssFileMB
}

// deliveries builds the hook bodies: N users in batches of B.
func deliveries(s Scenario) [][]byte {
	var out [][]byte
	for start := 0; start < s.Users; start += s.Batch {
		var evs []string
		for u := start; u < min(start+s.Batch, s.Users); u++ {
			n := s.subject(u)
			evs = append(evs, fmt.Sprintf(`{"uuid":"bench-%07d","published":"2026-11-26T09:00:00.000Z","eventType":"user.lifecycle.deactivate","version":"0","severity":"INFO","displayMessage":"Deactivate Okta User","actor":{"id":"00uadmin","type":"User","alternateId":"admin@example.com","displayName":"Admin"},"outcome":{"result":"SUCCESS","reason":null},"target":[{"id":"00u%07d","type":"User","alternateId":"user%07d@example.com","displayName":"User %d","detailEntry":null}],"transaction":{"type":"WEB","id":"bench"}}`, n, n, n, n))
		}
		out = append(out, []byte(fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventTypeVersion":"1.0","cloudEventsVersion":"0.1","source":"https://acme.okta.com/api/v1/eventHooks/whobench","eventId":"bench-delivery-%d","eventTime":"2026-11-26T09:00:01.000Z","contentType":"application/json","data":{"events":[%s]}}`, start, strings.Join(evs, ","))))
	}
	return out
}

// sendHooks posts every delivery, Senders at a time, and returns the
// response times in ms; any answer but 200 is an error.
func sendHooks(ctx context.Context, url string, bodies [][]byte, senders int, rate float64) ([]float64, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	next := make(chan []byte)
	var mu sync.Mutex
	var lat []float64
	var firstErr error
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range next {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/hooks/okta", bytes.NewReader(body))
				req.Header.Set("Authorization", hookSecret)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				d := time.Since(t0)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("hook answered %d", resp.StatusCode)
					}
				}
				mu.Lock()
				lat = append(lat, float64(d.Microseconds())/1000)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	for i, b := range bodies {
		if tick != nil && i > 0 {
			<-tick
		}
		next <- b
	}
	close(next)
	wg.Wait()
	return lat, firstErr
}

// auditFacts reads what the run left in the worker's audit index.
type auditFacts struct {
	succeeded    int
	rows         int
	lagMaxMS     int64
	timeToRevoke []float64
}

func readAudit(path string, withTimes bool) (auditFacts, error) {
	var f auditFacts
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return f, err
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT count(*), coalesce(max(indexed_ms - time_ms), 0), coalesce(sum(type = 'revocation.succeeded'), 0) FROM records`).Scan(&f.rows, &f.lagMaxMS, &f.succeeded); err != nil {
		return f, err
	}
	if !withTimes {
		return f, nil
	}
	rows, err := db.Query(`SELECT json_extract(body, '$.detail.time_to_revoke_ms') FROM records WHERE type = 'revocation.succeeded'`)
	if err != nil {
		return f, err
	}
	defer rows.Close()
	for rows.Next() {
		var ms float64
		if err := rows.Scan(&ms); err != nil {
			return f, err
		}
		f.timeToRevoke = append(f.timeToRevoke, ms)
	}
	return f, rows.Err()
}

// runPipeline deactivates N users through the worker and waits until every
// (user, target) revocation is confirmed by its receiver and indexed.
func runPipeline(ctx context.Context, s Scenario, dir string, progress io.Writer) (Pipeline, *receiverSet, func(), error) {
	var p Pipeline
	bin, err := buildWorker(ctx, dir)
	p.bin = bin
	if err != nil {
		return p, nil, nil, err
	}
	receivers, err := startReceivers(s.Targets)
	if err != nil {
		return p, nil, nil, err
	}
	cleanup := receivers.Close
	var nats *natsServer
	if natsOwnProcess {
		if nats, err = startNATSServer(ctx, dir); err != nil {
			return p, receivers, cleanup, err
		}
		defer nats.stop()
	}
	w, err := startWorker(ctx, bin, dir, receivers, s, nats)
	if err != nil {
		return p, receivers, cleanup, err
	}
	defer w.stop()
	if err := receivers.SetJWKSURL(w.url + "/.well-known/jwks.json"); err != nil {
		return p, receivers, cleanup, err
	}
	cpu0, restRSS, _ := procStats(w.cmd.Process.Pid)
	rcpu0, _, _ := procStats(receivers.Pid())
	ncpu0 := nats.cpu()
	bodies := deliveries(s)
	want := s.Users * s.Targets

	if pprofAddr != "" {
		// 10 s from the first delivery: within the default run on a fast
		// machine too (the server cannot end a profile early, and a profile
		// cut off by the worker's exit is lost).
		go saveProfile("http://"+pprofAddr+"/debug/pprof/profile?seconds=10", filepath.Join(dir, "cpu.pprof"))
	}
	start := time.Now()
	lat, err := sendHooks(ctx, w.url, bodies, s.Senders, s.Rate)
	p.DeliverySeconds = time.Since(start).Seconds()
	if err != nil {
		return p, receivers, cleanup, err
	}
	fmt.Fprintf(progress, "  %d deliveries sent in %.1fs; waiting for %d revocations\n", len(bodies), p.DeliverySeconds, want)

	// Confirmed: every receiver has answered 2xx for every user.
	var lastConfirm time.Time
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := receivers.Status()
		if err != nil {
			return p, receivers, cleanup, err
		}
		got := st.Succeeded
		if got >= want {
			lastConfirm = time.Now()
			break
		}
		if time.Now().After(deadline) {
			return p, receivers, cleanup, fmt.Errorf("only %d of %d revocations confirmed after 10 minutes", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Indexed: every confirmation is in the audit trail.
	dbPath := filepath.Join(dir, "data", "audit.db")
	for {
		f, err := readAudit(dbPath, false)
		if err == nil && f.succeeded >= want {
			break
		}
		if time.Now().After(deadline) {
			return p, receivers, cleanup, fmt.Errorf("only %d of %d revocations indexed", f.succeeded, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	indexedAt := time.Now()
	cpu1, rss, rssFile := procStats(w.cmd.Process.Pid)
	rcpu1, _, _ := procStats(receivers.Pid())
	if pprofAddr != "" {
		saveProfile("http://"+pprofAddr+"/debug/pprof/heap", filepath.Join(dir, "heap.pprof"))
	}

	f, err := readAudit(dbPath, true)
	if err != nil {
		return p, receivers, cleanup, err
	}
	p.Deliveries = len(bodies)
	p.DeliveriesPerS = float64(len(bodies)) / p.DeliverySeconds
	p.HookMS = quantiles(lat)
	if p.WorkerHookMS, err = workerHookTimes(w.url); err != nil {
		return p, receivers, cleanup, err
	}
	p.Revocations = want
	p.Seconds = lastConfirm.Sub(start).Seconds()
	p.RevocationsPerS = float64(want) / p.Seconds
	p.TimeToRevokeMS = quantiles(f.timeToRevoke)
	p.IndexLagMaxMS = f.lagMaxMS
	p.AuditRows = f.rows
	p.AuditRowsPerS = float64(f.rows) / indexedAt.Sub(start).Seconds()
	p.PeakRSSMB = rss
	p.RSSFileMB = rssFile
	p.RestRSSMB = restRSS
	p.CPUSeconds = cpu1 - cpu0
	p.CPUPer1000 = p.CPUSeconds / (float64(want) / 1000)
	p.ReceiversCPUSeconds = rcpu1 - rcpu0
	busy := p.CPUSeconds + p.ReceiversCPUSeconds
	if nats != nil {
		ncpu1, nrss, nfile := procStats(nats.cmd.Process.Pid)
		p.NATSServer = &Usage{PeakRSSMB: nrss, RSSFileMB: nfile, CPUSeconds: ncpu1 - ncpu0}
		busy += p.NATSServer.CPUSeconds
	}
	p.CoresBusy = busy / indexedAt.Sub(start).Seconds()
	st, err := receivers.Status()
	if err != nil {
		return p, receivers, cleanup, err
	}
	p.Rejected, p.RejectReasons = st.Rejected, st.Reasons
	if f.succeeded != want {
		return p, receivers, cleanup, fmt.Errorf("%d revocation.succeeded records for %d pairs", f.succeeded, want)
	}
	return p, receivers, cleanup, nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pprofAddr, when set, is where the worker serves profiles.
var pprofAddr string

func saveProfile(url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
	fmt.Fprintln(os.Stderr, "saved", path)
}

const benchAuditToken = "bench-audit-token-0123456789"

// WorkerHook is the worker's own view of its hook answers: p50 and p99
// interpolated within its histogram's buckets (as Prometheus'
// histogram_quantile does) and the share answered within 20 ms.
type WorkerHook struct {
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
	Within20  float64 `json:"share_within_20ms"`
	Requests  float64 `json:"requests"`
	BucketsMS string  `json:"buckets"`
}

// workerHookTimes reads the worker's intake histogram for the Okta hook.
func workerHookTimes(url string) (WorkerHook, error) {
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+benchAuditToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return WorkerHook{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return WorkerHook{}, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	type bucket struct{ le, n float64 }
	var bs []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "lw_intake_request_duration_seconds_bucket{") || !strings.Contains(line, `endpoint="okta_hook"`) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.Index(line[i+4:], `"`)
		le, err1 := strconv.ParseFloat(line[i+4:i+4+j], 64)
		n, err2 := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err1 != nil || err2 != nil {
			continue // +Inf parses; anything else is not ours
		}
		bs = append(bs, bucket{le, n})
	}
	if len(bs) == 0 {
		return WorkerHook{}, fmt.Errorf("metrics: no okta_hook intake histogram")
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	total := bs[len(bs)-1].n
	q := func(phi float64) float64 {
		rank := phi * total
		lo, below := 0.0, 0.0
		for _, b := range bs {
			if b.n >= rank {
				if math.IsInf(b.le, 1) {
					return lo * 1000
				}
				return (lo + (b.le-lo)*(rank-below)/max(b.n-below, 1)) * 1000
			}
			lo, below = b.le, b.n
		}
		return lo * 1000
	}
	h := WorkerHook{P50: q(0.5), P99: q(0.99), Requests: total}
	var parts []string
	for _, b := range bs {
		if b.le == 0.02 {
			h.Within20 = b.n / total
		}
		parts = append(parts, fmt.Sprintf("%g:%g", b.le*1000, b.n))
	}
	h.BucketsMS = strings.Join(parts, " ")
	return h, nil
}
