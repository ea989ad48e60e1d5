package console

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

var pageNames = []string{"signin", "forbidden", "offboardings", "offboarding", "person", "targets", "deadletters", "replay", "evidence"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ts": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return ""
				}
				return v.UTC().Format("2006-01-02 15:04:05Z")
			case *time.Time:
				if v == nil {
					return ""
				}
				return v.UTC().Format("2006-01-02 15:04:05Z")
			}
			return ""
		},
		"ms": func(v any) string {
			switch n := v.(type) {
			case *int64:
				if n == nil {
					return ""
				}
				return humanMS(*n)
			case int64:
				return humanMS(n)
			}
			return ""
		},
		"label": func(s *audit.Subject) string {
			if s == nil {
				return "(unknown)"
			}
			return s.Label()
		},
		"sla": func(b *bool) string {
			switch {
			case b == nil:
				return ""
			case *b:
				return "within"
			}
			return "breached"
		},
		"pct": func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
		"hex": func(b []byte) string { return hex.EncodeToString(b) },
		"dur": func(d time.Duration) string { return d.Round(time.Second).String() },
		"num": func(n int64) string {
			if n < 0 {
				return "?"
			}
			return strconv.FormatInt(n, 10)
		},
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func humanMS(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d < time.Second:
		return strconv.FormatInt(ms, 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return d.Round(time.Second).String()
}

// render executes a page inside the layout, whole, before anything is
// written: a template error is a 500, never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["S"], data["Page"] = s, name
	data["DLQ"] = c.dlq != nil
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (c *Console) badRequest(w http.ResponseWriter, r *http.Request, s *session, page string, err error, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["Error"] = err.Error()
	c.render(w, r, http.StatusBadRequest, page, s, data)
}

// offboardings: incomplete and SLA breaches first, then the newest.
func (c *Console) offboardings(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	form := map[string]string{"since": q.Get("since"), "status": q.Get("status"), "target": q.Get("target"), "source": q.Get("source")}
	if form["since"] == "" {
		form["since"] = "7d"
	}
	data := map[string]any{"Form": form, "SLA": c.sla.String()}
	since, err := audit.ParseTime(form["since"], c.now())
	if err != nil {
		c.badRequest(w, r, s, "offboardings", fmt.Errorf("since: %w", err), data)
		return
	}
	if st := form["status"]; st != "" && st != "complete" && st != "incomplete" {
		c.badRequest(w, r, s, "offboardings", fmt.Errorf("status: %q is not complete or incomplete", st), data)
		return
	}
	list, _, err := c.reader.Offboardings(r.Context(), audit.OffboardingFilter{Since: since, Status: form["status"], SLA: c.sla, Limit: 500})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	targets, sources := map[string]bool{}, map[string]bool{}
	var rows []audit.Offboarding
	var totals struct{ All, Incomplete, Breached, Complete int }
	for _, o := range list {
		sources[o.Source] = true
		hit := form["target"] == ""
		for _, t := range o.Targets {
			targets[t.Target] = true
			hit = hit || t.Target == form["target"]
		}
		if !hit || (form["source"] != "" && o.Source != form["source"]) {
			continue
		}
		rows = append(rows, o)
		totals.All++
		if o.Status == "complete" {
			totals.Complete++
		} else {
			totals.Incomplete++
		}
		if o.WithinSLA != nil && !*o.WithinSLA {
			totals.Breached++
		}
	}
	rank := func(o audit.Offboarding) int {
		switch {
		case o.WithinSLA != nil && !*o.WithinSLA && o.Status != "complete":
			return 0
		case o.Status != "complete":
			return 1
		case o.WithinSLA != nil && !*o.WithinSLA:
			return 2
		}
		return 3
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if a, b := rank(rows[i]), rank(rows[j]); a != b {
			return a < b
		}
		return receivedOf(rows[i]).After(receivedOf(rows[j]))
	})
	data["Rows"], data["Totals"] = rows, totals
	data["Targets"], data["Sources"] = sortedKeys(targets), sortedKeys(sources)
	c.render(w, r, http.StatusOK, "offboardings", s, data)
}

func receivedOf(o audit.Offboarding) time.Time {
	if o.ReceivedAt != nil {
		return *o.ReceivedAt
	}
	if o.OccurredAt != nil {
		return *o.OccurredAt
	}
	return time.Time{}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Console) offboarding(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("event_id")
	o, err := c.reader.Offboarding(r.Context(), id, c.sla)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if o == nil {
		c.render(w, r, http.StatusNotFound, "offboarding", s, map[string]any{"Missing": id})
		return
	}
	recs, err := c.reader.Query(r.Context(), audit.Filter{EventID: id, Limit: audit.MaxLimit})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "offboarding", s, map[string]any{"O": o, "Records": recs})
}

// exposure is what a person may still hold after their offboardings.
type exposure struct {
	EventID string
	What    string
	Where   string
}

func (c *Console) person(w http.ResponseWriter, r *http.Request, s *session) {
	who := r.URL.Query().Get("q")
	data := map[string]any{"Q": who}
	if who == "" {
		c.render(w, r, http.StatusOK, "person", s, data)
		return
	}
	offs, totals, err := c.reader.Offboardings(r.Context(), audit.OffboardingFilter{Subject: who, SLA: c.sla, Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	recs, err := c.reader.Query(r.Context(), audit.Filter{Subject: who, Limit: audit.MaxLimit})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var left []exposure
	for _, o := range offs {
		for _, t := range o.Targets {
			if t.Status != "succeeded" && t.Status != "not_applicable" {
				left = append(left, exposure{o.EventID, "not revoked (" + t.Status + ")", t.Target})
			}
		}
		for _, a := range o.Uncovered {
			left = append(left, exposure{o.EventID, "ID-JAG audience no target revokes at", a})
		}
		for _, t := range o.AwaitingConfirmation {
			left = append(left, exposure{o.EventID, "revocation accepted, not confirmed", t})
		}
		if o.ExposedUntil != nil && o.ExposedUntil.After(c.now()) {
			left = append(left, exposure{o.EventID, "tokens issued before the revocation live until " + o.ExposedUntil.UTC().Format(time.RFC3339), "(token lifetime)"})
		}
		if o.ExposureUnknown {
			left = append(left, exposure{o.EventID, "a target did not declare its token lifetime", "(token lifetime)"})
		}
	}
	data["Offboardings"], data["Totals"], data["Records"], data["Exposure"], data["Searched"] = offs, totals, recs, left, true
	c.render(w, r, http.StatusOK, "person", s, data)
}

func (c *Console) personReport(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	who, format := q.Get("q"), q.Get("format")
	if who == "" || !slices.Contains([]string{"md", "csv", "json"}, format) {
		http.Error(w, "want q and format md, csv or json", http.StatusBadRequest)
		return
	}
	offs, totals, err := c.reader.Offboardings(r.Context(), audit.OffboardingFilter{Subject: who, SLA: c.sla})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rep := audit.Report{GeneratedAt: c.now().UTC(), SLA: c.sla.String(), Totals: totals, Offboardings: offs}
	if rep.Offboardings == nil {
		rep.Offboardings = []audit.Offboarding{}
	}
	var buf bytes.Buffer
	if err := rep.Write(&buf, format); err != nil {
		c.fail(w, r, err)
		return
	}
	ctype := map[string]string{"md": "text/markdown; charset=utf-8", "csv": "text/csv; charset=utf-8", "json": "application/json"}[format]
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="offboarding-report.`+format+`"`)
	_, _ = w.Write(buf.Bytes())
}

// targetStats is one target's record over the window.
type targetStats struct {
	TargetHealth
	Known              bool         // configured on this node
	Window             audit.Totals // its revocations in the window
	SuccessRate        float64
	HasRate            bool
	P50, P90, P99, Max int64
	Samples            int
	HeldNow            bool
}

func (c *Console) targets(w http.ResponseWriter, r *http.Request, s *session) {
	window := r.URL.Query().Get("since")
	if window == "" {
		window = "7d"
	}
	since, err := audit.ParseTime(window, c.now())
	if err != nil {
		c.badRequest(w, r, s, "targets", fmt.Errorf("since: %w", err), map[string]any{"Since": window})
		return
	}
	list, _, err := c.reader.Offboardings(r.Context(), audit.OffboardingFilter{Since: since, Limit: 5000})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	by := map[string]*targetStats{}
	get := func(name string) *targetStats {
		if by[name] == nil {
			by[name] = &targetStats{TargetHealth: TargetHealth{Name: name, Backlog: -1, Dead: -1}}
		}
		return by[name]
	}
	var health []TargetHealth
	var healthErr string
	if c.health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		health, err = c.health(ctx)
		cancel()
		if err != nil {
			healthErr = err.Error()
		}
	}
	for _, h := range health {
		t := get(h.Name)
		t.TargetHealth, t.Known, t.HeldNow = h, true, h.Held > 0
	}
	samples := map[string][]int64{}
	var all []int64
	for _, o := range list {
		for _, tg := range o.Targets {
			get(tg.Target).Window.AddTarget(tg)
			if tg.Status == "succeeded" && tg.TimeToRevokeMS != nil {
				samples[tg.Target] = append(samples[tg.Target], *tg.TimeToRevokeMS)
				all = append(all, *tg.TimeToRevokeMS)
			}
		}
	}
	var rows []*targetStats
	for name, t := range by {
		w := t.Window
		if done := w.Succeeded + w.NotApplicable + w.DeadLettered; done > 0 {
			t.SuccessRate, t.HasRate = float64(w.Succeeded+w.NotApplicable)/float64(done), true
		}
		xs := samples[name]
		t.Samples = len(xs)
		t.P50, t.P90, t.P99, t.Max = percentiles(xs)
		rows = append(rows, t)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	p50, p90, p99, top := percentiles(all)
	c.render(w, r, http.StatusOK, "targets", s, map[string]any{"Since": window, "Rows": rows, "HealthError": healthErr,
		"Histogram": histogramSVG(all), "All": map[string]any{"N": len(all), "P50": p50, "P90": p90, "P99": p99, "Max": top}})
}

// percentiles sorts xs and returns p50, p90, p99 (nearest rank) and max.
func percentiles(xs []int64) (p50, p90, p99, top int64) {
	if len(xs) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(xs)
	at := func(p float64) int64 {
		rank := int(math.Ceil(p * float64(len(xs))))
		return xs[min(max(rank, 1), len(xs))-1]
	}
	return at(0.50), at(0.90), at(0.99), xs[len(xs)-1]
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, s *session) {
	target := r.URL.Query().Get("target")
	list, err := c.dlq.ListFor(r.Context(), revoke.DLQFilter{Target: target, Limit: 500}, s.actor())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "deadletters", s, map[string]any{"List": list, "Target": target,
		"Replayed": r.URL.Query().Get("replayed"), "Operator": s.Role == audit.RoleOperator})
}

// confirmReplay asks before replaying: a replay calls the target again.
func (c *Console) confirmReplay(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	target, event := q.Get("target"), q.Get("event")
	if target == "" || event == "" {
		http.Error(w, "want target and event", http.StatusBadRequest)
		return
	}
	list, err := c.dlq.ListFor(r.Context(), revoke.DLQFilter{Target: target, EventID: event, Limit: 10}, s.actor())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "replay", s, map[string]any{"Target": target, "Event": event, "List": list})
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	target, event := r.PostFormValue("target"), r.PostFormValue("event")
	if target == "" || event == "" {
		http.Error(w, "want target and event", http.StatusBadRequest)
		return
	}
	out, err := c.dlq.Replay(r.Context(), revoke.DLQFilter{Target: target, EventID: event}, s.actor())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.InfoContext(r.Context(), "console: dead letters replayed", "target", target, "event", event, "count", len(out), "by", s.actor())
	http.Redirect(w, r, "/dead-letters?replayed="+strconv.Itoa(len(out)), http.StatusSeeOther)
}

func (c *Console) evidence(w http.ResponseWriter, r *http.Request, s *session) {
	head, err := c.reader.Head(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ckpt, err := c.reader.LatestCheckpoint(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	signed := ""
	if ckpt != nil {
		signed = "not by the checkpoint key this worker holds"
		for _, k := range c.keys {
			if ckpt.Verify(k) {
				signed = "valid (the checkpoint key this worker holds)"
			}
		}
	}
	c.verifyMu.Lock()
	last := c.lastVerify
	c.verifyMu.Unlock()
	c.render(w, r, http.StatusOK, "evidence", s, map[string]any{"Head": head, "Checkpoint": ckpt, "Signed": signed, "Last": last})
}

// verify runs the whole verification now, one at a time; the result stays
// on the page (and in the log) with who asked.
func (c *Console) verify(w http.ResponseWriter, r *http.Request, s *session) {
	if !c.verifyMu.TryLock() {
		http.Error(w, "a verification is running; reload the evidence page in a moment", http.StatusConflict)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	v := &verification{At: c.now().UTC(), By: s.actor()}
	res, err := c.reader.Verify(r.Context(), audit.VerifyOptions{Keys: c.keys, CheckpointFiles: c.files,
		MaxUncovered: c.maxAhead, MaxUncoveredAge: c.maxAge, Now: c.now()})
	v.Result = res
	if err != nil {
		v.Err = err.Error()
	}
	c.lastVerify = v
	c.verifyMu.Unlock()
	c.log.InfoContext(r.Context(), "console: audit verified", "by", v.By, "records", res.Records, "problem", res.Problem, "err", err)
	http.Redirect(w, r, "/evidence", http.StatusSeeOther)
}

func (c *Console) export(w http.ResponseWriter, r *http.Request, _ *session) {
	q := r.URL.Query()
	format := q.Get("format")
	ext := map[string]string{"jsonl": "jsonl", "csv": "csv", "ocsf": "ocsf.jsonl"}[format]
	if ext == "" {
		http.Error(w, "format: jsonl, csv or ocsf", http.StatusBadRequest)
		return
	}
	var f audit.Filter
	if v := q.Get("since"); v != "" {
		t, err := audit.ParseTime(v, c.now())
		if err != nil {
			http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
			return
		}
		f.Since = t
	}
	w.Header().Set("Content-Type", map[string]string{"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "ocsf": "application/x-ndjson"}[format])
	w.Header().Set("Content-Disposition", `attachment; filename="audit.`+ext+`"`)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	if err := c.reader.Export(r.Context(), w, format, f); err != nil {
		c.log.ErrorContext(r.Context(), "console export", "err", err)
	}
}

// liveUpdates is a Server-Sent Events stream that says "change" whenever
// the audit index grows; the page then reloads its content. Streams are
// few (a fixed number of slots) and short-lived (browsers reconnect).
func (c *Console) liveUpdates(w http.ResponseWriter, r *http.Request, _ *session) {
	select {
	case c.live <- struct{}{}:
		defer func() { <-c.live }()
	default:
		http.Error(w, "too many live views open", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	head, err := c.reader.Head(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	last := head.Seq
	_, _ = fmt.Fprintf(w, "retry: 2000\nevent: hello\ndata: %d\n\n", last)
	_ = rc.Flush()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	quiet := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h, err := c.reader.Head(ctx)
		if err != nil {
			return
		}
		if h.Seq != last {
			last, quiet = h.Seq, 0
			_, err = fmt.Fprintf(w, "event: change\ndata: %d\n\n", last)
		} else if quiet++; quiet%15 == 0 {
			_, err = fmt.Fprint(w, ": still here\n\n")
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}
