package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// An AUDIT message carries one record, or a group of them
// (docs/decisions/0017): a group's body is the records' encodings joined by
// '\n' (an encoding has none: JSON escapes control characters in strings),
// and the message says how many it carries in GroupHeader. A message
// without the header is one record, as every message was before groups.
const (
	GroupHeader  = "Lw-Records"
	GroupSubject = "audit.records"
	// MaxGroup is the most records a message may carry; the index reads a
	// message that claims more as one undecodable record (a message of
	// 1 MiB could otherwise claim half a million empty ones).
	MaxGroup = 1024
)

// ErrBadGroup means a message's GroupHeader does not describe its body.
var ErrBadGroup = errors.New("malformed record group")

// JoinGroup is the body of a message carrying the encoded records bodies.
func JoinGroup(bodies [][]byte) []byte { return bytes.Join(bodies, []byte{'\n'}) }

// SplitGroup returns the records' bodies of a message with body data and
// GroupHeader values header: data itself without the header, its n parts
// with "n". Anything else is ErrBadGroup: several headers, a count that is
// not a plain decimal in 2..MaxGroup, or a body with another number of
// parts.
func SplitGroup(data []byte, header []string) ([][]byte, error) {
	switch len(header) {
	case 0:
		return [][]byte{data}, nil
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d %s headers", ErrBadGroup, len(header), GroupHeader)
	}
	n, err := strconv.Atoi(header[0])
	if err != nil || n < 2 || n > MaxGroup || strconv.Itoa(n) != header[0] {
		return nil, fmt.Errorf("%w: %s %q is not a count in 2..%d", ErrBadGroup, GroupHeader, header[0], MaxGroup)
	}
	if parts := bytes.Count(data, []byte{'\n'}) + 1; parts != n {
		return nil, fmt.Errorf("%w: %s says %d records, the body has %d", ErrBadGroup, GroupHeader, n, parts)
	}
	return bytes.SplitN(data, []byte{'\n'}, n), nil
}

// Group is a Recorder that commits the records of concurrent calls
// together: while one write is in flight, the calls that arrive queue, and
// go to Next as one call — one AUDIT message — when it ends. A call returns
// once the write carrying its records is durable (or failed: then every
// call in it gets the error), so nothing is acknowledged before its record
// is; an idle recorder writes a call at once, and a busy one writes fewer,
// larger messages. The order of a call's records is kept, and a call made
// after another returned comes after it in the trail.
type Group struct {
	Next Recorder
	// Max is the most records of one write (default and at most MaxGroup;
	// a single call with more is written alone, and the writer splits it).
	Max int
	// Timeout bounds a write, which outlives the callers that gave up on it
	// (default 10 s).
	Timeout time.Duration

	mu      sync.Mutex
	queue   []*groupCall
	writing bool
	onQueue func(queued int) // tests: told, under mu, of each call queued
}

type groupCall struct {
	recs []Record
	done chan error // buffered: the writer never waits for a caller
}

var _ Recorder = (*Group)(nil)

// Record queues recs for the next write and waits until it is durable, or
// until ctx ends. When no write is in flight a goroutine starts one; it
// writes what queues meanwhile when it is done, one write at a time, until
// the queue is empty.
func (g *Group) Record(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	c := &groupCall{recs: recs, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.onQueue != nil {
		g.onQueue(len(g.queue))
	}
	lead := !g.writing
	g.writing = true
	g.mu.Unlock()
	if lead {
		go g.write(context.WithoutCancel(ctx))
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		// Still written, later or meanwhile: the outcome is unknown, as
		// for any publish whose acknowledgement did not come.
		return fmt.Errorf("audit record not confirmed durable: %w", ctx.Err())
	}
}

// write writes the queue's first group, and hands on what queued meanwhile.
func (g *Group) write(ctx context.Context) {
	limit := g.Max
	if limit <= 0 || limit > MaxGroup {
		limit = MaxGroup
	}
	g.mu.Lock()
	n, count := 0, 0
	for n < len(g.queue) && (n == 0 || count+len(g.queue[n].recs) <= limit) {
		count += len(g.queue[n].recs)
		n++
	}
	calls := make([]*groupCall, n)
	copy(calls, g.queue)
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	g.mu.Unlock()

	recs := calls[0].recs
	if len(calls) > 1 {
		recs = make([]Record, 0, count)
		for _, c := range calls {
			recs = append(recs, c.recs...)
		}
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err := g.Next.Record(wctx, recs...)
	cancel()
	for _, c := range calls {
		c.done <- err
	}

	g.mu.Lock()
	more := len(g.queue) > 0
	g.writing = more
	g.mu.Unlock()
	if more {
		go g.write(ctx)
	}
}
