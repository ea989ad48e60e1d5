package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/console"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// telemetry is what /metrics shows. Counters and histograms of events and
// revocations are taken from the audit records as this node's indexer
// writes them into its index: every record of the trail exactly once, from
// whichever replica wrote it, so they count the same facts as the trail
// (and every replica shows the cluster's figures). Backlogs and dead
// letters are read from the streams at scrape time; intake answer times are
// this process's.
type telemetry struct {
	reg *prometheus.Registry

	events        *prometheus.CounterVec // source, kind, result
	authFailures  *prometheus.CounterVec // source
	revocations   *prometheus.CounterVec // target, outcome
	retries       *prometheus.CounterVec // target
	replays       *prometheus.CounterVec // target
	requestTime   *prometheus.HistogramVec
	timeToRevoke  *prometheus.HistogramVec
	intakeTime    *prometheus.HistogramVec // endpoint
	intakeAnswers *prometheus.CounterVec   // endpoint, code
	refusals      *prometheus.CounterVec   // source, type
	confirmations *prometheus.CounterVec   // target
	streams       *prometheus.CounterVec   // outcome
}

func newTelemetry() *telemetry {
	t := &telemetry{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_events_total",
			Help: "Lifecycle events by source and kind: accepted (durable, counted once when planned), duplicate (delivered again), ignored, or rejected."}, []string{"source", "kind", "result"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_intake_auth_failures_total",
			Help: "Intake requests refused for missing or wrong credentials, as recorded one by one (refusals past the budget are summarised; lw_refusals_total counts every refusal)."}, []string{"source"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_revocations_total",
			Help: "Revocation jobs ended, by target and outcome (succeeded, not_applicable, dead_lettered)."}, []string{"target", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_revocation_retries_total",
			Help: "Attempts that failed transiently and will be retried."}, []string{"target"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_dead_letter_replays_total",
			Help: "Dead letters put back on the queue by an operator."}, []string{"target"}),
		requestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lw_revocation_request_duration_seconds",
			Help:    "How long a target took to answer a revocation request.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"target"}),
		timeToRevoke: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lw_time_to_revoke_seconds",
			Help:    "From the signal's receipt to the target's confirmation.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600}}, []string{"target"}),
		intakeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lw_intake_request_duration_seconds",
			Help:    "How long an IdP waited for our answer (Okta gives up after 3 s).",
			Buckets: []float64{.005, .01, .02, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"endpoint"}),
		intakeAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_intake_requests_total",
			Help: "Intake requests by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_refusals_total",
			Help: "Refused requests at the public endpoints (intake and API), by source and record type, whether written one by one or summarised by the refusal budget."}, []string{"source", "type"}),
		confirmations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_revocation_confirmations_total",
			Help: "Revocations a target's authorization server confirmed with a signed SET."}, []string{"target"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lw_ssf_stream_events_total",
			Help: "What happened to the SSF streams the worker manages: created, updated, verified, verification_overdue, status_<status>, subjects_added, subjects_none."}, []string{"outcome"}),
	}
	b := readBuildInfo()
	t.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lw_build_info",
		Help:        "The running build: always 1, with its version, commit and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "go_version": b.Go}}, func() float64 { return 1 }))
	t.reg.MustRegister(t.events, t.authFailures, t.revocations, t.retries, t.replays, t.requestTime, t.timeToRevoke,
		t.intakeTime, t.intakeAnswers, t.refusals, t.confirmations, t.streams,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return t
}

// watch adds what is read from the streams and the index at scrape time.
func (t *telemetry) watch(b *bus.Bus, ix *audit.Indexer, targets []*revoke.Target) {
	t.reg.MustRegister(&streamCollector{bus: b, ix: ix, targets: targets})
}

// Handler serves the registry in Prometheus text format.
func (t *telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// observe counts a record now in this node's index.
func (t *telemetry) observe(r audit.Record) {
	if t == nil {
		return
	}
	switch r.Type {
	case audit.TypeEventReceived:
		result := "accepted" // once per event, by the planner
		if r.Outcome == audit.OutcomeDuplicate {
			result = "duplicate" // an IdP's repeated delivery of an event we hold
		}
		t.events.WithLabelValues(r.Source, r.Kind, result).Inc()
	case audit.TypeEventIgnored:
		t.events.WithLabelValues(r.Source, r.Kind, "ignored").Inc()
	case audit.TypeEventRejected:
		t.events.WithLabelValues(r.Source, r.Kind, "rejected").Inc()
	case audit.TypeAuthFailed:
		t.authFailures.WithLabelValues(r.Source).Inc()
	case audit.TypeRevocationAttempted:
		t.retries.WithLabelValues(r.Target).Inc()
		t.requestTime.WithLabelValues(r.Target).Observe(float64(r.LatencyMS) / 1000)
	case audit.TypeRevocationSucceeded, audit.TypeRevocationNotApplicable, audit.TypeRevocationDeadLettered:
		t.revocations.WithLabelValues(r.Target, r.Outcome).Inc()
		// A dead letter without a status or latency ended before any
		// request was sent (attempts exhausted, undecodable job).
		if r.Type != audit.TypeRevocationDeadLettered || r.HTTPStatus != 0 || r.LatencyMS != 0 {
			t.requestTime.WithLabelValues(r.Target).Observe(float64(r.LatencyMS) / 1000)
		}
		if r.Type == audit.TypeRevocationSucceeded {
			if ms, ok := audit.TimeToRevokeMS(r.Detail); ok {
				t.timeToRevoke.WithLabelValues(r.Target).Observe(float64(ms) / 1000)
			}
		}
	case audit.TypeRevocationReplayed:
		t.replays.WithLabelValues(r.Target).Inc()
	case audit.TypeRevocationConfirmed:
		t.confirmations.WithLabelValues(r.Target).Inc()
	case audit.TypeStream:
		t.streams.WithLabelValues(r.Outcome).Inc()
	}
}

// refused counts one refusal, as the refusal budget sees it.
func (t *telemetry) refused(source string, typ audit.Type) {
	t.refusals.WithLabelValues(source, string(typ)).Inc()
}

// intake wraps an IdP-facing handler to time it and count its answers.
func (t *telemetry) intake(endpoint string, h http.Handler) http.Handler {
	hist, answers := t.intakeTime.WithLabelValues(endpoint), t.intakeAnswers.MustCurryWith(prometheus.Labels{"endpoint": endpoint})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		hist.Observe(time.Since(start).Seconds())
		answers.WithLabelValues(strconv.Itoa(sw.code)).Inc()
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// streamCollector reads, at scrape time, what waits in the streams and the
// state of this node's audit index and breakers.
type streamCollector struct {
	bus     *bus.Bus
	ix      *audit.Indexer
	targets []*revoke.Target
}

var (
	descBacklog = prometheus.NewDesc("lw_revoke_backlog_messages",
		"REVOKE messages of a target not yet finished (waiting or in flight); each carries one job or a batch of up to 100.", []string{"target"}, nil)
	descPlanner = prometheus.NewDesc("lw_planner_backlog_events",
		"Lifecycle events not yet planned.", nil, nil)
	descDead = prometheus.NewDesc("lw_dead_letters",
		"Revocation jobs in the dead-letter queue, by target.", []string{"target"}, nil)
	descBreaker = prometheus.NewDesc("lw_target_held_seconds",
		"How long this node holds a target's jobs (open breaker or Retry-After); 0 when it calls the target.", []string{"target"}, nil)
	descStreamLast = prometheus.NewDesc("lw_audit_stream_last_seq", "Last sequence of the AUDIT stream.", nil, nil)
	descIndexed    = prometheus.NewDesc("lw_audit_indexed_seq", "Last AUDIT message (stream sequence) in this node's index.", nil, nil)
	descIxBacklog  = prometheus.NewDesc("lw_audit_index_backlog_records", "AUDIT messages (a record or a group of records) not yet in this node's index.", nil, nil)
	descIxLag      = prometheus.NewDesc("lw_audit_index_lag_seconds", "Record time to indexed, for the oldest record of the last batch.", nil, nil)
	descIxAhead    = prometheus.NewDesc("lw_audit_index_ahead_of_stream_messages", "AUDIT messages this node's index holds beyond the stream's last; above 0 the indexer has stopped (the stream lost messages, e.g. a power loss without nats.sync_always).", nil, nil)
	descIxBatches  = prometheus.NewDesc("lw_audit_index_batches_total", "Indexer transactions committed.", nil, nil)
	descCkpts      = prometheus.NewDesc("lw_audit_checkpoints_total", "Signed checkpoints written.", nil, nil)
	descStreamUsed = prometheus.NewDesc("lw_stream_bytes_ratio",
		"A capped stream's size as a share of its cap (nats.stream_max_bytes); at 1 the stream refuses new messages. Alert well before: at 0.9 refusals are only summarised.", []string{"stream"}, nil)
	descStreamBytes = prometheus.NewDesc("lw_stream_bytes", "A capped stream's size on disk.", []string{"stream"}, nil)
)

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBacklog, descPlanner, descDead, descBreaker, descStreamLast, descIndexed, descIxBacklog, descIxLag, descIxAhead, descIxBatches, descCkpts, descStreamUsed, descStreamBytes} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pending := func(stream, durable string) (float64, error) {
		n, err := c.bus.Pending(ctx, stream, durable)
		return float64(n), err
	}
	for _, t := range c.targets {
		if n, err := pending(bus.StreamRevoke, "exec-"+t.Name); err == nil {
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, n, t.Name)
		} else {
			ch <- prometheus.NewInvalidMetric(descBacklog, err)
		}
		held := 0.0
		if t.Breaker != nil {
			held = t.Breaker.Remaining().Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, held, t.Name)
	}
	if n, err := pending(bus.StreamLifecycle, "planner"); err == nil {
		ch <- prometheus.MustNewConstMetric(descPlanner, prometheus.GaugeValue, n)
	} else {
		ch <- prometheus.NewInvalidMetric(descPlanner, err)
	}
	// Dead letters per target: the DLQ stream's subjects are revoke_dlq.<target>.
	dead := map[string]uint64{}
	if counts, err := c.bus.SubjectCounts(ctx, bus.StreamDLQ, "revoke_dlq.>"); err == nil {
		for subj, n := range counts {
			dead[strings.TrimPrefix(subj, "revoke_dlq.")] += n
		}
		for _, t := range c.targets {
			ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(dead[t.Name]), t.Name)
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descDead, err)
	}
	if usage, err := c.bus.CappedUsage(ctx); err == nil {
		for _, u := range usage {
			ch <- prometheus.MustNewConstMetric(descStreamUsed, prometheus.GaugeValue, u.Ratio(), u.Stream)
			ch <- prometheus.MustNewConstMetric(descStreamBytes, prometheus.GaugeValue, float64(u.Bytes), u.Stream)
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descStreamUsed, err)
	}
	if c.ix == nil {
		return // no audit index on this process
	}
	last, _ := c.bus.LastSeq(ctx, bus.StreamAudit)
	st := c.ix.Stats()
	ch <- prometheus.MustNewConstMetric(descStreamLast, prometheus.GaugeValue, float64(last))
	ch <- prometheus.MustNewConstMetric(descIndexed, prometheus.GaugeValue, float64(st.Indexed))
	ch <- prometheus.MustNewConstMetric(descIxBacklog, prometheus.GaugeValue, float64(last-min(last, st.Indexed)))
	ch <- prometheus.MustNewConstMetric(descIxLag, prometheus.GaugeValue, float64(st.LagMS)/1000)
	ch <- prometheus.MustNewConstMetric(descIxAhead, prometheus.GaugeValue, float64(st.AheadOfStream))
	ch <- prometheus.MustNewConstMetric(descIxBatches, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(descCkpts, prometheus.CounterValue, float64(st.Checkpoints))
}

// targetHealth is each target as this node sees it now: held (breaker or
// Retry-After), jobs waiting, dead letters.
func targetHealth(ctx context.Context, b *bus.Bus, targets []*revoke.Target) ([]console.TargetHealth, error) {
	counts, err := b.SubjectCounts(ctx, bus.StreamDLQ, "revoke_dlq.>")
	dead := map[string]int64{}
	for subj, n := range counts {
		dead[strings.TrimPrefix(subj, "revoke_dlq.")] += int64(n)
	}
	out := make([]console.TargetHealth, 0, len(targets))
	for _, t := range targets {
		h := console.TargetHealth{Name: t.Name, Driver: t.DriverName, Backlog: -1, Dead: -1}
		if t.Breaker != nil {
			h.Held = t.Breaker.Remaining()
		}
		if err == nil {
			h.Dead = dead[t.Name]
		}
		if n, perr := b.Pending(ctx, bus.StreamRevoke, "exec-"+t.Name); perr == nil {
			h.Backlog = int64(n)
		}
		out = append(out, h)
	}
	return out, err
}
