package stream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// State is a small key-value store shared by every process (NATS KV): the
// stream's id, its tokens and its verification live there, so that any
// replica's receiver accepts the current token and sees a verification.
type State interface {
	Get(ctx context.Context, key string) (val []byte, rev uint64, found bool, err error)
	Create(ctx context.Context, key string, val []byte) (uint64, error)
	Update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error)
	Put(ctx context.Context, key string, val []byte) error
}

// Record is what we keep about one transmitter's stream.
type Record struct {
	Issuer    string    `json:"iss"`
	StreamID  string    `json:"stream_id,omitempty"`
	Token     string    `json:"token,omitempty"`      // what the transmitter sends now
	PrevToken string    `json:"prev_token,omitempty"` // accepted until the next rotation
	RotatedAt time.Time `json:"rotated_at"`
	// VerifyState is the state of the last verification we asked for;
	// VerifiedAt is when a verification SET echoing it arrived.
	VerifyState string    `json:"verify_state,omitempty"`
	VerifySent  time.Time `json:"verify_sent"`
	VerifiedAt  time.Time `json:"verified_at"`
	Overdue     bool      `json:"overdue,omitempty"`
	// PollURL is where a poll stream's SETs are fetched (the transmitter
	// names it).
	PollURL string `json:"poll_url,omitempty"`
	// SubjectsNoted: the trail says why no subject was added.
	SubjectsNoted bool   `json:"subjects_noted,omitempty"`
	Status        string `json:"status,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// Verified reports whether the last verification asked for has come.
func (r Record) Verified() bool { return !r.VerifySent.IsZero() && !r.VerifiedAt.Before(r.VerifySent) }

// Registry is the streams' shared state, read by every receiver and kept by
// the managers.
type Registry struct {
	State    State
	Recorder audit.Recorder
	Now      func() time.Time
	Log      *slog.Logger

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	tokens [][]byte
	at     time.Time
}

func key(iss string) string {
	sum := sha256.Sum256([]byte(iss))
	return "ssf-stream." + hex.EncodeToString(sum[:16])
}

// Load returns the record of iss's stream (empty when none).
func (g *Registry) Load(ctx context.Context, iss string) (Record, uint64, error) {
	val, rev, found, err := g.State.Get(ctx, key(iss))
	if err != nil || !found {
		return Record{Issuer: iss}, 0, err
	}
	var r Record
	if err := json.Unmarshal(val, &r); err != nil {
		return Record{Issuer: iss}, 0, fmt.Errorf("stream record of %s: %w", iss, err)
	}
	return r, rev, nil
}

func (g *Registry) save(ctx context.Context, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	g.mu.Lock()
	delete(g.cache, r.Issuer)
	g.mu.Unlock()
	return g.State.Put(ctx, key(r.Issuer), b)
}

// Tokens are the bearer tokens iss's stream may deliver with (the current
// one and the one before a rotation), read through a five-second cache.
func (g *Registry) Tokens(ctx context.Context, iss string) [][]byte {
	g.mu.Lock()
	if c, ok := g.cache[iss]; ok && g.Now().Sub(c.at) < 5*time.Second {
		g.mu.Unlock()
		return c.tokens
	}
	g.mu.Unlock()
	r, _, err := g.Load(ctx, iss)
	if err != nil {
		g.Log.WarnContext(ctx, "ssf stream tokens unavailable", "iss", audit.BoundString(iss), "err", err)
		return nil
	}
	var toks [][]byte
	for _, t := range []string{r.Token, r.PrevToken} {
		if t != "" {
			toks = append(toks, []byte(t))
		}
	}
	g.mu.Lock()
	if g.cache == nil {
		g.cache = map[string]cached{}
	}
	g.cache[iss] = cached{tokens: toks, at: g.Now()}
	g.mu.Unlock()
	return toks
}

// Verified records a verification SET from iss echoing state; it reports
// whether state is the one we asked for.
func (g *Registry) Verified(ctx context.Context, iss, state string) (bool, error) {
	for range 3 { // a concurrent update: read again
		r, rev, err := g.Load(ctx, iss)
		if err != nil {
			return false, err
		}
		if state == "" || state != r.VerifyState {
			return false, nil
		}
		r.VerifiedAt, r.Overdue = g.Now().UTC(), false
		b, _ := json.Marshal(r)
		if rev == 0 {
			_, err = g.State.Create(ctx, key(iss), b)
		} else {
			_, err = g.State.Update(ctx, key(iss), b, rev)
		}
		if err == nil {
			return true, g.record(ctx, r, "verified", "a verification SET echoed the state we asked for", nil)
		}
	}
	return false, errors.New("stream record kept changing")
}

// StatusChanged records a stream-updated SET from iss.
func (g *Registry) StatusChanged(ctx context.Context, iss, status, reason string) error {
	r, _, err := g.Load(ctx, iss)
	if err != nil {
		return err
	}
	if r.Status == status && r.Reason == reason {
		return nil
	}
	r.Status, r.Reason = status, reason
	if err := g.save(ctx, r); err != nil {
		return err
	}
	return g.record(ctx, r, "status_"+status, "the transmitter says the stream is "+status, map[string]any{"reason": reason})
}

// record puts a stream fact on the trail (type ssf.stream).
func (g *Registry) record(ctx context.Context, r Record, outcome, what string, extra map[string]any) error {
	if g.Recorder == nil {
		return nil
	}
	d := map[string]any{"iss": r.Issuer, "stream_id": r.StreamID}
	for k, v := range extra {
		d[k] = v
	}
	now := g.Now().UTC()
	id := fmt.Sprintf("ssf-stream/%s/%s/%d", key(r.Issuer), outcome, now.UnixNano())
	return g.Recorder.Record(ctx, audit.Record{ID: id, Time: now, Type: audit.TypeStream, Source: "ssf", Outcome: outcome, Error: what, Detail: audit.Detail(d)})
}

// Manager keeps one transmitter's stream as configured.
type Manager struct {
	Client   *Client
	Registry *Registry
	Endpoint string // our push endpoint (public_url/ssf/events)
	// Poll asks for a poll stream (RFC 8936) instead of push: for a worker
	// the transmitter cannot reach. Its SETs are fetched at the endpoint the
	// transmitter names, with the management API's credentials.
	Poll        bool
	Events      []string // events_requested
	Description string
	// RotateEvery replaces the stream's token (default 30 days);
	// VerifyEvery asks for a verification again (default a day);
	// VerifyWithin is how long one may take before it is overdue (5 min).
	RotateEvery, VerifyEvery, VerifyWithin time.Duration
	// Subjects lists the people we revoke for, as RFC 9493 subject
	// identifiers: a transmitter whose default_subjects is NONE sends events
	// only for subjects added to the stream, so they are added (nil: we
	// cannot know them; the trail says so).
	Subjects func(ctx context.Context) ([]map[string]any, error)
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Reconcile makes the transmitter's stream match the configuration: found
// (or created) and pointed at our endpoint with our current token and the
// events we want; its status read; a verification asked for when due, and
// one that did not come in time put on record.
func (m *Manager) Reconcile(ctx context.Context) (Record, error) {
	g := m.Registry
	now := g.Now().UTC()
	r, _, err := g.Load(ctx, m.Client.Issuer)
	if err != nil {
		return r, err
	}
	meta, err := m.Client.Discover(ctx)
	if err != nil {
		return r, err
	}
	method := MethodPush
	if m.Poll {
		method = MethodPoll
	}
	if len(meta.DeliveryMethodsSupported) > 0 && !slices.Contains(meta.DeliveryMethodsSupported, method) {
		return r, fmt.Errorf("the transmitter does not deliver by %s: %v", method, meta.DeliveryMethodsSupported)
	}
	rotate := m.RotateEvery
	if rotate <= 0 {
		rotate = 30 * 24 * time.Hour
	}
	changed := false
	if !m.Poll && (r.Token == "" || now.Sub(r.RotatedAt) >= rotate) {
		r.PrevToken, r.Token, r.RotatedAt, changed = r.Token, newToken(), now, true
		// The new token must be accepted before the transmitter uses it.
		if err := g.save(ctx, r); err != nil {
			return r, err
		}
	}
	want := Config{Delivery: &Delivery{Method: MethodPush, EndpointURL: m.Endpoint, AuthorizationHeader: "Bearer " + r.Token},
		EventsRequested: m.Events, Description: m.Description}
	if m.Poll { // the transmitter names the poll endpoint
		want.Delivery = &Delivery{Method: MethodPoll}
	}
	var have *Config
	if r.StreamID != "" {
		have, err = m.Client.Get(ctx, r.StreamID)
		if errors.Is(err, ErrNotFound) {
			g.Log.WarnContext(ctx, "ssf stream is gone at the transmitter; creating it again", "iss", m.Client.Issuer, "stream_id", r.StreamID)
			r.StreamID, have = "", nil
		} else if err != nil {
			return r, err
		}
	}
	if have == nil {
		// A stream of ours may exist that we lost track of (one per
		// receiver is common): adopt it rather than fail with 409.
		if list, err := m.Client.List(ctx); err == nil {
			for i := range list {
				d := list[i].Delivery
				if d != nil && (!m.Poll && d.EndpointURL == m.Endpoint || m.Poll && d.Method == MethodPoll && len(list) == 1) {
					have = &list[i]
					changed = true // our token is new to it
					break
				}
			}
		}
	}
	outcome := ""
	switch {
	case have == nil:
		created, err := m.Client.Create(ctx, want)
		if err != nil {
			return r, err
		}
		if created.Iss != "" && created.Iss != m.Client.Issuer {
			return r, fmt.Errorf("create stream: the stream's iss is %q, not %q", created.Iss, m.Client.Issuer)
		}
		r.StreamID, outcome, have = created.StreamID, "created", created
	case changed || have.Delivery == nil || have.Delivery.Method != method || !m.Poll && have.Delivery.EndpointURL != m.Endpoint ||
		!sameSet(have.EventsRequested, m.Events):
		want.StreamID = have.StreamID
		updated, err := m.Client.Update(ctx, want)
		if err != nil {
			return r, err
		}
		r.StreamID, outcome, have = have.StreamID, "updated", updated
	}
	if m.Poll && have != nil && have.Delivery != nil && have.Delivery.EndpointURL != r.PollURL {
		if err := m.Client.CheckURL(have.Delivery.EndpointURL); have.Delivery.EndpointURL == "" || err != nil {
			return r, fmt.Errorf("the poll stream's endpoint_url %q is not usable: %v", have.Delivery.EndpointURL, err)
		}
		r.PollURL = have.Delivery.EndpointURL
		if err := g.save(ctx, r); err != nil {
			return r, err
		}
	}
	if outcome != "" {
		r.VerifySent = time.Time{} // ask for a verification of the new setup
		if err := g.save(ctx, r); err != nil {
			return r, err
		}
		extra := map[string]any{"endpoint": m.Endpoint, "events_requested": m.Events}
		if m.Poll {
			extra["endpoint"] = r.PollURL
		}
		if have != nil {
			extra["events_delivered"] = have.EventsDelivered
		}
		if err := g.record(ctx, r, outcome, "stream "+outcome+" at the transmitter", extra); err != nil {
			return r, err
		}
	}
	if meta.StatusEndpoint != "" {
		if st, err := m.Client.Status(ctx, r.StreamID); err == nil && (st.Status != r.Status || st.Reason != r.Reason) {
			r.Status, r.Reason = st.Status, st.Reason
			if err := g.save(ctx, r); err != nil {
				return r, err
			}
			if err := g.record(ctx, r, "status_"+st.Status, "the stream is "+st.Status, map[string]any{"reason": st.Reason}); err != nil {
				return r, err
			}
			if st.Status != "enabled" {
				g.Log.WarnContext(ctx, "ssf stream is not enabled: no signals arrive", "iss", m.Client.Issuer, "status", st.Status, "reason", st.Reason)
			}
		} else if err != nil {
			g.Log.WarnContext(ctx, "ssf stream status", "iss", m.Client.Issuer, "err", err)
		}
	}
	if meta.DefaultSubjects == "NONE" {
		if err := m.addSubjects(ctx, &r); err != nil {
			return r, err
		}
	}
	return r, m.verify(ctx, r)
}

// addSubjects adds to the stream every subject we know that it lacks (a
// marker per subject in the shared state); with none known, it says once
// on the trail why nothing was added.
func (m *Manager) addSubjects(ctx context.Context, r *Record) error {
	g := m.Registry
	var subjects []map[string]any
	if m.Subjects != nil {
		var err error
		if subjects, err = m.Subjects(ctx); err != nil {
			return fmt.Errorf("subjects: %w", err)
		}
	}
	if len(subjects) == 0 {
		if r.SubjectsNoted {
			return nil
		}
		r.SubjectsNoted = true
		if err := g.save(ctx, *r); err != nil {
			return err
		}
		g.Log.WarnContext(ctx, "the transmitter sends events only for subjects added to the stream, and we know none to add", "iss", r.Issuer)
		return g.record(ctx, *r, "subjects_none", "the transmitter's default_subjects is NONE and no subject is known to add "+
			"(subjects come from the SCIM users the IdPs provisioned to this worker); add them at the transmitter", nil)
	}
	added := 0
	for _, sub := range subjects {
		b, _ := json.Marshal(sub)
		sum := sha256.Sum256(append([]byte(r.Issuer+"\x00"+r.StreamID+"\x00"), b...))
		k := "ssf-subject." + hex.EncodeToString(sum[:16])
		if _, _, found, err := g.State.Get(ctx, k); err != nil || found {
			continue
		}
		if err := m.Client.AddSubject(ctx, r.StreamID, sub); err != nil {
			return err
		}
		if err := g.State.Put(ctx, k, []byte("1")); err != nil {
			return err
		}
		added++
	}
	if added > 0 {
		return g.record(ctx, *r, "subjects_added", fmt.Sprintf("%d subjects added to the stream", added), map[string]any{"added": added})
	}
	return nil
}

// verify asks for a verification when none was asked for yet, or the last
// is a VerifyEvery old; a pending one older than VerifyWithin is overdue.
func (m *Manager) verify(ctx context.Context, r Record) error {
	g := m.Registry
	now := g.Now().UTC()
	within, every := m.VerifyWithin, m.VerifyEvery
	if within <= 0 {
		within = 5 * time.Minute
	}
	if every <= 0 {
		every = 24 * time.Hour
	}
	// Re-read: a verification may have arrived at any replica.
	cur, _, err := g.Load(ctx, r.Issuer)
	if err != nil {
		return err
	}
	r.VerifiedAt, r.VerifyState, r.VerifySent, r.Overdue = cur.VerifiedAt, cur.VerifyState, cur.VerifySent, cur.Overdue
	if !r.VerifySent.IsZero() && !r.Verified() && now.Sub(r.VerifySent) > within {
		if !r.Overdue {
			r.Overdue = true
			if err := g.save(ctx, r); err != nil {
				return err
			}
			g.Log.ErrorContext(ctx, "ssf stream verification did not come: is the transmitter delivering to us?", "iss", r.Issuer, "stream_id", r.StreamID, "asked", r.VerifySent)
			if err := g.record(ctx, r, "verification_overdue", "no verification SET within "+within.String()+" of asking", map[string]any{"asked": r.VerifySent}); err != nil {
				return err
			}
		}
		if now.Sub(r.VerifySent) < every {
			return nil
		}
	}
	if !r.VerifySent.IsZero() && now.Sub(r.VerifySent) < every {
		return nil
	}
	state := newToken()[:24]
	r.VerifyState, r.VerifySent, r.Overdue = state, now, false
	if err := g.save(ctx, r); err != nil { // known before the SET can arrive
		return err
	}
	if err := m.Client.Verify(ctx, r.StreamID, state); err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	return nil
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}
