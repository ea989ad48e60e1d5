package oktalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/oktaapi"
)

// IDJAGEventType is the (not hook-eligible) event of an ID-JAG grant.
const IDJAGEventType = "app.oauth2.token.grant.id_jag"

// State is the poller's small durable state (a NATS KV bucket).
type State interface {
	// Get returns the value and its revision; found is false if absent.
	Get(ctx context.Context, key string) (val []byte, rev uint64, found bool, err error)
	// Create fails if the key exists; Update fails unless rev is current.
	Create(ctx context.Context, key string, val []byte) (uint64, error)
	Update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error)
	Put(ctx context.Context, key string, val []byte) error
}

// Config configures the poller.
type Config struct {
	OrgURL   string // https://acme.okta.com (http:// and a port only in tests)
	Token    string // API token (SSWS), scope okta.logs.read
	Interval time.Duration
	Lookback time.Duration // how far back the very first poll starts
	Mapping  events.Mapping
	// Owner names this process in the lease.
	Owner     string
	Publisher events.Publisher
	Recorder  audit.Recorder
	State     State
	Now       func() time.Time
	Log       *slog.Logger
	// HTTPClient is the transport (timeouts); nil uses a 30 s client.
	HTTPClient *http.Client
}

// Poller polls the System Log.
type Poller struct {
	cfg    Config
	client *oktaapi.Client
	filter string
	issuer string
	// leaseRev is our lease's KV revision while we hold it.
	leaseRev uint64
}

const (
	keyCursor = "oktalog.cursor"
	keyLease  = "oktalog.lease"
)

// New validates cfg and builds the Okta client (internal/oktaapi: ambient
// Okta settings are ignored).
func New(cfg Config) (*Poller, error) {
	var errs []error
	u, err := url.Parse(cfg.OrgURL)
	if err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("oktalog: bad org url %q", cfg.OrgURL))
	}
	if cfg.Token == "" {
		errs = append(errs, errors.New("oktalog: no API token"))
	}
	if cfg.Interval <= 0 || cfg.Lookback <= 0 {
		errs = append(errs, errors.New("oktalog: interval and lookback must be positive"))
	}
	if cfg.Mapping == nil || cfg.Publisher == nil || cfg.Recorder == nil || cfg.State == nil || cfg.Now == nil || cfg.Log == nil || cfg.Owner == "" {
		errs = append(errs, errors.New("oktalog: mapping, publisher, recorder, state, clock, logger and owner are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	// A 429 ends the poll, which waits until X-Rate-Limit-Reset (failed).
	client, err := oktaapi.New(oktaapi.Config{OrgURL: cfg.OrgURL, Token: cfg.Token, Client: cfg.HTTPClient})
	if err != nil {
		return nil, fmt.Errorf("oktalog: %w", err)
	}
	types := slices.Sorted(func(yield func(string) bool) {
		for t := range cfg.Mapping {
			if !yield(t) {
				return
			}
		}
	})
	types = append(types, IDJAGEventType)
	var clauses []string
	for _, t := range types {
		clauses = append(clauses, `eventType eq "`+t+`"`)
	}
	return &Poller{cfg: cfg, client: client, filter: strings.Join(clauses, " or "),
		issuer: strings.TrimRight(u.Scheme+"://"+u.Host, "/")}, nil
}

// Run polls every interval while it holds the lease, until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if held, err := p.lease(ctx); err != nil {
			p.cfg.Log.WarnContext(ctx, "system log lease", "err", err)
		} else if held {
			if err := p.PollOnce(ctx); err != nil && ctx.Err() == nil {
				p.cfg.Log.WarnContext(ctx, "system log poll", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type leaseValue struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// lease takes or renews the cluster-wide lease: one poller polls.
func (p *Poller) lease(ctx context.Context) (bool, error) {
	now := p.cfg.Now()
	mine, _ := json.Marshal(leaseValue{Owner: p.cfg.Owner, Until: now.Add(3 * p.cfg.Interval)})
	val, rev, found, err := p.cfg.State.Get(ctx, keyLease)
	if err != nil {
		return false, err
	}
	if !found {
		r, err := p.cfg.State.Create(ctx, keyLease, mine)
		if err != nil {
			return false, nil // someone else was faster
		}
		p.leaseRev = r
		return true, nil
	}
	var cur leaseValue
	_ = json.Unmarshal(val, &cur)
	if cur.Owner != p.cfg.Owner && now.Before(cur.Until) {
		return false, nil
	}
	r, err := p.cfg.State.Update(ctx, keyLease, mine, rev)
	if err != nil {
		return false, nil // lost a race for it
	}
	p.leaseRev = r
	return true, nil
}

type cursor struct {
	After   string    `json:"after"`
	Next    string    `json:"next"`
	SavedAt time.Time `json:"saved_at"`
}

// PollOnce reads pages until one comes back empty: each page's events are
// made durable before the cursor moves past them, so a crash repeats a page
// (harmless: the IDs dedupe) and never skips one.
func (p *Poller) PollOnce(ctx context.Context) error {
	for {
		var cur cursor
		val, _, found, err := p.cfg.State.Get(ctx, keyCursor)
		if err != nil {
			return err
		}
		if found {
			_ = json.Unmarshal(val, &cur)
		}
		// GET /api/v1/logs: since and after are mutually exclusive.
		q := url.Values{"filter": {p.filter}, "limit": {"1000"}, "sortOrder": {"ASCENDING"}}
		if cur.After != "" {
			q.Set("after", cur.After)
		} else {
			q.Set("since", p.cfg.Now().Add(-p.cfg.Lookback).UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		resp, err := p.client.Do(ctx, http.MethodGet, "/api/v1/logs", q)
		if err != nil {
			return fmt.Errorf("system log: %w", err)
		}
		if !resp.OK() {
			return p.failed(ctx, resp)
		}
		var page []json.RawMessage
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return fmt.Errorf("decode system log page: %w", err)
		}
		if err := p.handle(ctx, page); err != nil {
			return err
		}
		next, after := nextLink(resp.Header)
		if after == "" {
			return errors.New("system log answer has no rel=next link with an after cursor")
		}
		if after != cur.After {
			b, _ := json.Marshal(cursor{After: after, Next: next, SavedAt: p.cfg.Now().UTC()})
			if err := p.cfg.State.Put(ctx, keyCursor, b); err != nil {
				return fmt.Errorf("save system log cursor: %w", err)
			}
		}
		if len(page) == 0 {
			return nil
		}
	}
}

// failed reports an answer that is not a page; a 429 is waited out until
// X-Rate-Limit-Reset (+1 s, between 1 s and 5 min).
func (p *Poller) failed(ctx context.Context, resp *oktaapi.Response) error {
	if resp.Status != http.StatusTooManyRequests {
		return resp.Err("system log")
	}
	wait := p.cfg.Interval
	if reset := resp.RateLimitReset(); !reset.IsZero() {
		wait = time.Until(reset) + time.Second
	}
	wait = min(max(wait, time.Second), 5*time.Minute)
	p.cfg.Log.WarnContext(ctx, "system log rate-limited; waiting for the reset", "wait", wait)
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
	return nil
}

// handle publishes a page's mapped events and notes ID-JAG grants.
func (p *Poller) handle(ctx context.Context, page []json.RawMessage) error {
	now := p.cfg.Now().UTC()
	var evs []events.Event
	var recs []audit.Record
	for _, raw := range page {
		var head struct {
			UUID      string `json:"uuid"`
			EventType string `json:"eventType"`
		}
		_ = json.Unmarshal(raw, &head)
		if head.EventType == IDJAGEventType {
			if err := p.noteIDJAG(ctx, raw); err != nil {
				return err
			}
			continue
		}
		ev, reason, err := events.MapOktaLogEvent(raw, events.SourceOktaLog, p.issuer, now, p.cfg.Mapping)
		switch {
		case err != nil:
			recs = append(recs, audit.Record{ID: "okta-log/" + head.UUID + "/rejected", Time: now, Type: audit.TypeEventRejected,
				Source: string(events.SourceOktaLog), Outcome: "rejected", Error: err.Error()})
		case reason != "":
			recs = append(recs, audit.Record{ID: "okta-log/" + head.UUID + "/ignored", Time: now, Type: audit.TypeEventIgnored,
				EventID: ev.ID, Source: string(events.SourceOktaLog), Subject: audit.SubjectOf(ev.Subject), Outcome: "ignored",
				Detail: audit.Detail(map[string]any{"reason": reason, "event_type": ev.Cause})})
		default:
			evs = append(evs, ev)
		}
	}
	if len(evs) > 0 {
		pubs, err := p.cfg.Publisher.PublishEvents(ctx, evs)
		if err != nil {
			return fmt.Errorf("publish system log events: %w", err)
		}
		dups := 0
		for _, pub := range pubs {
			if pub.Duplicate {
				dups++
			}
		}
		p.cfg.Log.InfoContext(ctx, "system log events", "new", len(evs)-dups, "already_seen", dups)
	}
	if len(recs) > 0 {
		if err := p.cfg.Recorder.Record(ctx, recs...); err != nil {
			return err
		}
	}
	return nil
}

// Grant is one ID-JAG issued to a user for an authorization server.
type Grant struct {
	Audience string    `json:"audience"`
	Client   string    `json:"client,omitempty"`
	Last     time.Time `json:"last"`
}

// InventoryKey is the lw_state key of a user's ID-JAG grants.
func InventoryKey(userID string) string {
	return "idjag." + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, userID)
}

// noteIDJAG records that a user received an ID-JAG, per audience: the
// inventory of MCP authorization servers that may hold tokens for them.
func (p *Poller) noteIDJAG(ctx context.Context, raw json.RawMessage) error {
	type actor struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	var le struct {
		Published    time.Time `json:"published"`
		Actor        actor     `json:"actor"`
		Target       []actor   `json:"target"`
		DebugContext struct {
			DebugData map[string]any `json:"debugData"`
		} `json:"debugContext"`
	}
	if err := json.Unmarshal(raw, &le); err != nil {
		return nil
	}
	var user, audience, client string
	if le.Actor.Type == "User" {
		user = le.Actor.ID
	}
	for _, t := range le.Target {
		switch t.Type {
		case "User":
			user = t.ID
		case "AppInstance":
			client = t.ID
		}
	}
	if aud, ok := le.DebugContext.DebugData["audience"].(string); ok {
		audience = aud
	}
	if user == "" || audience == "" {
		return nil
	}
	key := InventoryKey(user)
	val, rev, found, err := p.cfg.State.Get(ctx, key)
	if err != nil {
		return err
	}
	var grants []Grant
	if found {
		_ = json.Unmarshal(val, &grants)
	}
	when := le.Published
	i := slices.IndexFunc(grants, func(g Grant) bool { return g.Audience == audience })
	if i < 0 {
		grants = append(grants, Grant{Audience: audience, Client: client, Last: when})
	} else if when.After(grants[i].Last) {
		grants[i].Last = when
	}
	b, _ := json.Marshal(grants)
	if found {
		_, err = p.cfg.State.Update(ctx, key, b, rev)
	} else {
		_, err = p.cfg.State.Create(ctx, key, b)
	}
	return err
}

// nextLink returns the rel="next" URL of Link headers and its after value.
func nextLink(h http.Header) (string, string) {
	for _, v := range h.Values("Link") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if !strings.Contains(part, `rel="next"`) {
				continue
			}
			start, end := strings.Index(part, "<"), strings.Index(part, ">")
			if start < 0 || end <= start {
				continue
			}
			u, err := url.Parse(part[start+1 : end])
			if err != nil {
				continue
			}
			return u.String(), u.Query().Get("after")
		}
	}
	return "", ""
}
