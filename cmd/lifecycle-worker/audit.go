package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
)

func cmdAuditQuery(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	q := filterFlags(fs)
	format := fs.String("format", "table", "table | json (one record per line) | csv")
	asJSON := fs.Bool("json", false, "same as --format json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if *asJSON {
		*format = "json"
	}
	r, f, err := c.openFiltered(q)
	if err != nil {
		return err
	}
	defer r.Close()
	switch *format {
	case "json":
		return r.Export(context.Background(), stdout, "jsonl", f)
	case "csv":
		return r.Export(context.Background(), stdout, "csv", f)
	case "table":
	default:
		return fmt.Errorf("--format: table, json or csv")
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tEVENT\tSUBJECT\tTARGET\tATTEMPT\tOUTCOME\tHTTP\tERROR")
	// Page through everything that matches, oldest first.
	f.Limit = audit.MaxLimit
	shown := 0
	defer func() {
		if shown == 0 {
			fmt.Fprintln(stderr, "no records match (is the filter right? without filters, audit query shows the whole trail)")
		}
	}()
	for {
		recs, err := r.Query(context.Background(), f)
		if err != nil {
			return err
		}
		shown += len(recs)
		for _, rec := range recs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.Time.Format("2006-01-02T15:04:05.000Z07:00"), rec.Type,
				dash(rec.EventID), dash(rec.Subject.Label()), dash(rec.Target), dashInt(rec.Attempt), dash(rec.Outcome),
				dashInt(rec.HTTPStatus), dash(oneLine(rec.Error)))
		}
		if len(recs) < f.Limit {
			break
		}
		f.After = recs[len(recs)-1].Seq
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashInt(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// cmdAuditVerify recomputes the hash chain of the index; exit status 3
// names the first bad record.
func cmdAuditVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	publicKey := fs.String("public-key", "", "the pinned checkpoint public key (PEM), a copy kept away from this machine (the worker writes keys/checkpoint-key.pub.pem)")
	jwks := fs.String("jwks", "", "or a JWKS (file, or https URL such as the worker's /.well-known/jwks.json) holding the pinned Ed25519 key")
	var files []string
	fs.Func("checkpoints", "also check the checkpoints in this JSONL file (repeatable), e.g. a copy kept elsewhere", func(v string) error {
		files = append(files, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.loadForReading()
	if err != nil {
		return err
	}
	r, err := audit.OpenReader(cfg.Audit.DB)
	if err != nil {
		return err
	}
	defer r.Close()
	pinned, err := pinnedKeys(*publicKey, *jwks)
	if err != nil {
		return err
	}
	opts := audit.VerifyOptions{
		Keys: pinned, CheckpointFiles: append([]string{cfg.Audit.CheckpointFile}, files...),
		// The worker signs every checkpoint_every records or
		// checkpoint_interval; allow one more interval and a margin for
		// the indexer's lag before a missing checkpoint counts.
		MaxUncovered: uint64(cfg.Audit.CheckpointEvery), MaxUncoveredAge: 2*cfg.Audit.CheckpointInterval + 30*time.Second, Now: time.Now(),
	}
	res, err := r.Verify(context.Background(), opts)
	if err != nil {
		return err
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(res)
	} else if res.Problem == nil {
		fmt.Fprintf(stdout, "ok: %d records, chain whole, head %d %s, %d checkpoints signed by the pinned key hold, the newest signs record %d\n",
			res.Records, res.HeadSeq, res.Head, res.Checkpoints, res.NewestCheckpoint)
	}
	if res.Problem != nil {
		return res.Problem
	}
	return nil
}

// cmdAuditRebuild replays the AUDIT stream into a new index file and prints
// its head, which must equal the live index's.
func cmdAuditRebuild(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	out := fs.String("out", "", "the new index file (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists; rebuild writes a new file", *out)
	}
	cfg, err := c.loadForReading()
	if err != nil {
		return err
	}
	log := newLogger(config.LogConfig{Level: "warn"}, stderr)
	ctx := context.Background()
	head, err := rebuildIndex(ctx, cfg, *out, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuilt %s: head %d %x\n", *out, head.Seq, head.Hash)
	return nil
}

// rebuildIndex indexes the whole AUDIT stream into a fresh file. With the
// embedded server the store must not be in use by a running serve.
func rebuildIndex(ctx context.Context, cfg *config.Config, out string, log *slog.Logger) (audit.Head, error) {
	bc := busConfig(cfg, "lifecycle-worker-rebuild")
	bc.Listen = "" // no client listener for a one-off replay
	b, err := bus.Open(ctx, bc, log)
	if err != nil {
		return audit.Head{}, err
	}
	defer b.Close()
	s, err := b.JetStream().Stream(ctx, bus.StreamAudit)
	if err != nil {
		return audit.Head{}, fmt.Errorf("audit stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return audit.Head{}, fmt.Errorf("audit stream: %w", err)
	}
	store, err := audit.OpenStore(ctx, out)
	if err != nil {
		return audit.Head{}, err
	}
	defer store.Close()
	ix, err := audit.NewIndexer(b.JetStream(), store, audit.IndexerConfig{Stream: bus.StreamAudit, BatchSize: 1000}, log)
	if err != nil {
		return audit.Head{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = ix.Run(rctx); close(done) }()
	for ix.Indexed() < info.State.LastSeq {
		select {
		case <-done:
			cancel()
			return audit.Head{}, errors.New("indexer stopped early")
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	<-done
	return store.Head(), nil
}

// cmdAuditReport prints the offboarding report.
func cmdAuditReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	since := fs.String("since", "30d", "deprovisionings planned since (30d, 24h or RFC 3339)")
	slaFlag := fs.Duration("sla", 0, "policy window, e.g. 1h: judge each offboarding against it")
	status := fs.String("status", "", "only complete or incomplete")
	format := fs.String("format", "md", "md | csv | json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.loadForReading()
	if err != nil {
		return err
	}
	now := time.Now()
	from, err := audit.ParseTime(*since, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	r, err := audit.OpenReader(cfg.Audit.DB)
	if err != nil {
		return err
	}
	defer r.Close()
	list, totals, err := r.Offboardings(context.Background(), audit.OffboardingFilter{Since: from, Status: *status, SLA: *slaFlag})
	if err != nil {
		return err
	}
	rep := audit.Report{GeneratedAt: now.UTC(), Since: from.UTC(), Totals: totals, Offboardings: list}
	if rep.Offboardings == nil {
		rep.Offboardings = []audit.Offboarding{}
	}
	if *slaFlag > 0 {
		rep.SLA = slaFlag.String()
	}
	return rep.Write(stdout, *format)
}

// cmdAuditExport streams the trail to stdout.
func cmdAuditExport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	format := fs.String("format", "jsonl", "jsonl | csv | ocsf")
	q := filterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, f, err := c.openFiltered(q)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Export(context.Background(), stdout, *format, f)
}

// openFiltered opens the index read-only with the filter the flags gave.
func (c *common) openFiltered(q url.Values) (*audit.Reader, audit.Filter, error) {
	cfg, err := c.loadForReading()
	if err != nil {
		return nil, audit.Filter{}, err
	}
	f, err := audit.ParseFilter(q)
	if err != nil {
		return nil, audit.Filter{}, err
	}
	r, err := audit.OpenReader(cfg.Audit.DB)
	if err != nil {
		return nil, audit.Filter{}, err
	}
	return r, f, nil
}

// pinnedKeys reads the verifier's pinned checkpoint key. There is no
// default: a key read from the machine being verified proves nothing, since
// whoever rewrote the trail could have re-keyed it too.
func pinnedKeys(publicKey, jwks string) ([]ed25519.PublicKey, error) {
	var raw []byte
	var err error
	switch {
	case publicKey != "" && jwks != "":
		return nil, errors.New("give one of --public-key and --jwks")
	case publicKey != "":
		raw, err = readSmall(publicKey)
	case strings.HasPrefix(jwks, "https://") || strings.HasPrefix(jwks, "http://"):
		raw, err = fetchJWKS(jwks)
	case jwks != "":
		raw, err = readSmall(jwks)
	default:
		return nil, errors.New("audit verify needs the pinned checkpoint key: --public-key FILE or --jwks URL|FILE " +
			"(the worker writes keys/checkpoint-key.pub.pem; keep a copy away from this machine and verify against that copy)")
	}
	if err != nil {
		return nil, err
	}
	return keys.ParseCheckpointPublicKey(raw)
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// fetchJWKS gets a JWKS over https (http only on loopback), following no
// redirect.
func fetchJWKS(raw string) ([]byte, error) {
	if err := config.CheckEndpoint(raw, true); err != nil {
		return nil, fmt.Errorf("--jwks: %w", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: withUA(http.DefaultTransport), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(raw)
	if err != nil {
		return nil, fmt.Errorf("--jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("--jwks: %s answered %d", raw, resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// filterFlags registers the record filters on fs; the values land in the
// returned query (the API's vocabulary).
func filterFlags(fs *flag.FlagSet) url.Values {
	q := url.Values{}
	for _, f := range []struct{ name, help string }{
		{"subject", "the subject's email, login (both case-insensitive) or IdP id"},
		{"event", "an event id, e.g. okta:ab62c0bc-2837-11eb-9823-9fb8f750c5a9"},
		{"target", "a target name"},
		{"type", "a record type: " + strings.Join(recordTypes(), ", ")},
		{"outcome", "an outcome, e.g. accepted, duplicate, succeeded, not_applicable, dead_lettered, rejected"},
		{"since", "records at or after: a duration back from now (24h, 30d) or RFC 3339 (2026-11-30T10:00:00Z)"},
		{"until", "records before: a duration back from now or RFC 3339"},
		{"after", "records after this sequence number (paging)"},
		{"repeats", "true: also the rows that repeat an earlier record (written again after a crash, marked duplicate_of)"},
	} {
		fs.Func(f.name, f.help, func(v string) error { q.Set(f.name, v); return nil })
	}
	return q
}
