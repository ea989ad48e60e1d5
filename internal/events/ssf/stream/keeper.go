package stream

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Keeper reconciles every managed stream, each at its interval, while this
// process holds the cluster-wide lease: one process per cluster talks to
// the transmitters.
type Keeper struct {
	Managers  []*Manager
	Intervals []time.Duration // per manager
	// PollIntervals are the waits between polls of poll streams, per manager.
	PollIntervals []time.Duration
	State         State
	Owner         string // names this process in the lease
	Now           func() time.Time
	Log           *slog.Logger
	// Reconciled, when set, is told of each outcome (metrics, tests).
	Reconciled func(iss string, r Record, err error)
	// Poll runs the polling of a poll stream at url until ctx ends; the
	// keeper runs it while it holds the lease (one poller per stream).
	Poll func(ctx context.Context, iss, url string)

	polls map[string]*polling
}

type polling struct {
	url    string
	cancel context.CancelFunc
	done   chan struct{}
}

// poll keeps one polling goroutine per poll stream, at its current URL;
// stop ends them all.
func (k *Keeper) poll(ctx context.Context, iss, url string) {
	if k.Poll == nil || url == "" {
		return
	}
	if k.polls == nil {
		k.polls = map[string]*polling{}
	}
	if p := k.polls[iss]; p != nil {
		if p.url == url {
			return
		}
		p.cancel()
		<-p.done
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &polling{url: url, cancel: cancel, done: make(chan struct{})}
	k.polls[iss] = p
	go func() { defer close(p.done); k.Poll(pctx, iss, url) }()
}

func (k *Keeper) stopPolls() {
	for iss, p := range k.polls {
		p.cancel()
		<-p.done
		delete(k.polls, iss)
	}
}

const leaseKey = "ssf-streams.lease"

type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// Run reconciles until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	if len(k.Managers) == 0 {
		return
	}
	tick := time.Minute
	for _, iv := range k.Intervals {
		tick = min(tick, iv)
	}
	next := make([]time.Time, len(k.Managers))
	defer k.stopPolls()
	for {
		held, err := k.hold(ctx, 3*tick)
		if err != nil {
			k.Log.WarnContext(ctx, "ssf streams lease", "err", err)
		}
		if !held {
			k.stopPolls() // another process polls now
		}
		if held {
			for i, m := range k.Managers {
				if k.Now().Before(next[i]) {
					continue
				}
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				r, err := m.Reconcile(rctx)
				cancel()
				if err != nil && ctx.Err() == nil {
					k.Log.ErrorContext(ctx, "ssf stream not reconciled; the worker keeps serving and tries again", "iss", m.Client.Issuer, "err", err)
				}
				if k.Reconciled != nil {
					k.Reconciled(m.Client.Issuer, r, err)
				}
				if m.Poll {
					k.poll(ctx, m.Client.Issuer, r.PollURL)
				}
				next[i] = k.Now().Add(k.Intervals[i])
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(tick):
		}
	}
}

// hold takes or renews the lease.
func (k *Keeper) hold(ctx context.Context, ttl time.Duration) (bool, error) {
	now := k.Now()
	mine, _ := json.Marshal(lease{Owner: k.Owner, Until: now.Add(ttl)})
	val, rev, found, err := k.State.Get(ctx, leaseKey)
	if err != nil {
		return false, err
	}
	if !found {
		_, err := k.State.Create(ctx, leaseKey, mine)
		return err == nil, nil // an error: someone else was faster
	}
	var cur lease
	_ = json.Unmarshal(val, &cur)
	if cur.Owner != k.Owner && now.Before(cur.Until) {
		return false, nil
	}
	_, err = k.State.Update(ctx, leaseKey, mine, rev)
	return err == nil, nil
}
