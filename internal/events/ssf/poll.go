package ssf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"
)

// Poll is a transmitter's stream read by polling (RFC 8936) instead of
// push: for receivers the transmitter cannot reach.
type Poll struct {
	Issuer string // a configured transmitter
	URL    string // the stream's poll endpoint
	Token  string // bearer token for it
	// TokenFunc, when set, gives the bearer token for each request instead
	// (a managed stream polled with the management API's credentials).
	TokenFunc func(context.Context) (string, error)
	Interval  time.Duration
	MaxEvents int
}

// pollRequest and pollResponse are RFC 8936 §2.4's bodies.
type pollRequest struct {
	Ack               []string                     `json:"ack,omitempty"`
	SetErrs           map[string]map[string]string `json:"setErrs,omitempty"`
	MaxEvents         int                          `json:"maxEvents"`
	ReturnImmediately bool                         `json:"returnImmediately"`
}

type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// RunPoll polls until ctx ends. Each SET is handled as if pushed; the next
// request acknowledges the ones now durable (or not acted on) and reports
// the refused ones in setErrs. A SET that could not be made durable is
// neither, so the transmitter offers it again. At the end the pending
// acknowledgements are sent once more, briefly.
func (r *Receiver) RunPoll(ctx context.Context, p Poll) error {
	if _, ok := r.transmitters[p.Issuer]; !ok {
		return fmt.Errorf("ssf poll: %s is not a configured transmitter", p.Issuer)
	}
	if p.Interval <= 0 {
		p.Interval = 10 * time.Second
	}
	if p.MaxEvents <= 0 {
		p.MaxEvents = 100
	}
	var pending pollRequest
	for {
		more, err := r.pollOnce(ctx, p, &pending)
		if err != nil && ctx.Err() == nil {
			r.cfg.Log.WarnContext(ctx, "ssf poll failed; trying again", "iss", p.Issuer, "err", err)
		}
		if err == nil && more {
			continue
		}
		select {
		case <-ctx.Done():
			if len(pending.Ack) > 0 || len(pending.SetErrs) > 0 {
				final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				pending.ReturnImmediately = true // maxEvents 0: acknowledge only
				_, _ = r.exchange(final, p, pending)
				cancel()
			}
			return nil
		case <-time.After(p.Interval):
		}
	}
}

// pollOnce sends the pending acknowledgements, takes what comes, and
// leaves in pending what the next request must acknowledge. It reports
// whether the transmitter has more to give right away.
func (r *Receiver) pollOnce(ctx context.Context, p Poll, pending *pollRequest) (bool, error) {
	req := *pending
	req.MaxEvents, req.ReturnImmediately = p.MaxEvents, true
	got, err := r.exchange(ctx, p, req)
	if err != nil {
		return false, err
	}
	// The transmitter has what we sent: start the next request afresh.
	*pending = pollRequest{}
	jtis := make([]string, 0, len(got.Sets))
	for jti := range got.Sets {
		jtis = append(jtis, jti)
	}
	sort.Strings(jtis)
	for _, jti := range jtis {
		s, serr, err := r.ingest(ctx, got.Sets[jti], nil)
		switch {
		case serr != nil:
			r.refused(ctx, serr, s, map[string]any{"delivery": "poll", "poll_jti": jti})
			if pending.SetErrs == nil {
				pending.SetErrs = map[string]map[string]string{}
			}
			pending.SetErrs[jti] = map[string]string{"err": serr.code, "description": serr.desc}
		case err != nil:
			// Not durable: not acknowledged, so offered again.
			return false, errors.Join(fmt.Errorf("SET %s", jti), err)
		default:
			pending.Ack = append(pending.Ack, jti)
		}
	}
	return got.MoreAvailable && len(got.Sets) > 0, nil
}

// exchange sends one poll request and returns the transmitter's answer.
func (r *Receiver) exchange(ctx context.Context, p Poll, pr pollRequest) (pollResponse, error) {
	var got pollResponse
	body, _ := json.Marshal(pr)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return got, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	token := p.Token
	if p.TokenFunc != nil {
		if token, err = p.TokenFunc(ctx); err != nil {
			return got, fmt.Errorf("poll token: %w", err)
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return got, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return got, fmt.Errorf("poll endpoint answered %s", resp.Status)
	}
	limit := int64(max(pr.MaxEvents, 1)) * r.cfg.MaxBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(&got); err != nil {
		return got, fmt.Errorf("poll response: %w", err)
	}
	return got, nil
}

// Check reports whether a transmitter's keys can be had, and how many
// there are; with p.URL set, also that its poll endpoint answers our token
// (a request that takes and acknowledges nothing).
func (r *Receiver) Check(ctx context.Context, p Poll) (int, error) {
	tr, ok := r.transmitters[p.Issuer]
	if !ok {
		return 0, fmt.Errorf("%s is not a configured transmitter", p.Issuer)
	}
	found, err := tr.keys.Find(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("keys: %w", err)
	}
	if p.URL != "" {
		// maxEvents 0: whatever the answer holds is not taken (nor acked).
		if _, err := r.exchange(ctx, p, pollRequest{ReturnImmediately: true}); err != nil {
			return len(found), fmt.Errorf("poll endpoint: %w", err)
		}
	}
	return len(found), nil
}
