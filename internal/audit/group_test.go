package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSplitGroup(t *testing.T) {
	three := []byte("a\nbb\nccc")
	for _, c := range []struct {
		name   string
		data   []byte
		header []string
		want   []string // nil: ErrBadGroup
	}{
		{"no header: one record, newlines and all", three, nil, []string{"a\nbb\nccc"}},
		{"a group", three, []string{"3"}, []string{"a", "bb", "ccc"}},
		{"empty records are records", []byte("\n"), []string{"2"}, []string{"", ""}},
		{"fewer parts than said", three, []string{"4"}, nil},
		{"more parts than said", three, []string{"2"}, nil},
		{"a group of one", []byte("a"), []string{"1"}, nil},
		{"zero", []byte("a"), []string{"0"}, nil},
		{"a leading zero", three, []string{"03"}, nil},
		{"a sign", three, []string{"+3"}, nil},
		{"spaces", three, []string{" 3"}, nil},
		{"not a number", three, []string{"three"}, nil},
		{"two headers", three, []string{"3", "3"}, nil},
		{"more than MaxGroup", bytes.Repeat([]byte{'\n'}, MaxGroup), []string{fmt.Sprint(MaxGroup + 1)}, nil},
	} {
		got, err := SplitGroup(c.data, c.header)
		if c.want == nil {
			if !errors.Is(err, ErrBadGroup) {
				t.Errorf("%s: %q, %v; want ErrBadGroup", c.name, got, err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
			continue
		}
		for i := range got {
			if string(got[i]) != c.want[i] {
				t.Errorf("%s: part %d is %q, want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
	if got, err := SplitGroup(bytes.Repeat([]byte{'\n'}, MaxGroup-1), []string{fmt.Sprint(MaxGroup)}); err != nil || len(got) != MaxGroup {
		t.Errorf("a group of MaxGroup: %d parts, %v", len(got), err)
	}
}

// gate is a Recorder whose writes wait until the test lets them go, and
// which fails the writes it is told to.
type gate struct {
	mu     sync.Mutex
	writes [][]Record
	fail   map[int]error // by write number, from 0
	start  chan int      // told each write's number as it starts
	ok     chan struct{} // one receive per write
}

func newGate() *gate {
	return &gate{fail: map[int]error{}, start: make(chan int, 100), ok: make(chan struct{})}
}

func (g *gate) Record(ctx context.Context, recs ...Record) error {
	g.mu.Lock()
	n := len(g.writes)
	g.writes = append(g.writes, append([]Record(nil), recs...))
	err := g.fail[n]
	g.mu.Unlock()
	g.start <- n
	select {
	case <-g.ok:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

func (g *gate) write(n int) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes[n]
}

// watch has g tell of the calls it queues; queued(n) then returns once n
// calls wait in its queue.
func watch(g *Group) (queued func(t *testing.T, n int)) {
	lens := make(chan int, 1000)
	g.onQueue = func(n int) { lens <- n }
	return func(t *testing.T, n int) {
		t.Helper()
		for have := range lens {
			if have == n {
				return
			}
		}
	}
}

func records(call, n int) []Record {
	var out []Record
	for i := range n {
		out = append(out, Record{ID: fmt.Sprintf("c%d/r%d", call, i), Type: TypeRevocationSucceeded, Time: time.Unix(1700000000, 0)})
	}
	return out
}

// While a write is in flight, the calls that arrive go out together in the
// next one, each call's records together and in order; every call returns
// its own write's outcome, and only once that write has ended.
func TestGroupCommitsWhatQueuesDuringAWrite(t *testing.T) {
	next := newGate()
	next.fail[1] = errors.New("stream unavailable")
	g := &Group{Next: next}
	queued := watch(g)
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- g.Record(ctx, records(0, 2)...) }()
	if n := <-next.start; n != 0 {
		t.Fatalf("write %d started first", n)
	}
	const calls = 20
	results := make(chan error, calls)
	returned := make(chan int, calls)
	for c := 1; c <= calls; c++ {
		go func() { results <- g.Record(ctx, records(c, 1+c%3)...); returned <- c }()
	}
	queued(t, calls)
	select {
	case c := <-returned:
		t.Fatalf("call %d returned before any write of it", c)
	case err := <-first:
		t.Fatalf("the first call returned before its write ended: %v", err)
	default:
	}
	next.ok <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-next.start; n != 1 {
		t.Fatalf("write %d started second", n)
	}
	select {
	case c := <-returned:
		t.Fatalf("call %d returned while its write was in flight", c)
	default:
	}
	next.ok <- struct{}{}
	for range calls {
		if err := <-results; err == nil || err.Error() != "stream unavailable" {
			t.Errorf("a call of the failed write returned %v", err)
		}
	}
	// One write for the twenty calls, each call's records together.
	w := next.write(1)
	seen := map[int]bool{}
	for i := 0; i < len(w); {
		var c, r int
		fmt.Sscanf(w[i].ID, "c%d/r%d", &c, &r)
		if seen[c] || r != 0 {
			t.Fatalf("call %d's records are not together in order: %v", c, w)
		}
		seen[c] = true
		for k := range 1 + c%3 {
			if w[i+k].ID != fmt.Sprintf("c%d/r%d", c, k) {
				t.Fatalf("record %d of call %d is %s", k, c, w[i+k].ID)
			}
		}
		i += 1 + c%3
	}
	if len(seen) != calls {
		t.Fatalf("the second write carried %d calls, want %d", len(seen), calls)
	}

	// Idle again: the next call is written at once, and alone.
	go func() { first <- g.Record(ctx, records(99, 1)...) }()
	if n := <-next.start; n != 2 {
		t.Fatalf("write %d, want 2", n)
	}
	next.ok <- struct{}{}
	if err := <-first; err != nil || len(next.write(2)) != 1 {
		t.Fatalf("an idle call: %v, write %v", err, next.write(2))
	}
}

// A write carries at most Max records, taking whole calls; a call larger
// than Max goes alone.
func TestGroupWritesAtMostMax(t *testing.T) {
	next := newGate()
	g := &Group{Next: next, Max: 5}
	queued := watch(g)
	ctx := context.Background()
	done := make(chan error, 10)
	go func() { done <- g.Record(ctx, records(0, 1)...) }()
	<-next.start
	queued(t, 1) // the first call's, before its write
	sizes := []int{2, 2, 2, 7, 1}
	for c, n := range sizes {
		go func() { done <- g.Record(ctx, records(c+1, n)...) }()
		queued(t, c+1) // in this order
	}
	next.ok <- struct{}{}
	var got []int
	for range 4 { // {2,2} {2} {7} {1}
		n := <-next.start
		got = append(got, len(next.write(n)))
		next.ok <- struct{}{}
	}
	for range len(sizes) + 1 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[4 2 7 1]" {
		t.Fatalf("writes of %v records, want [4 2 7 1]", got)
	}
}

// A caller that gives up gets an error at once; its records are still
// written (the outcome is unknown, as for a publish whose ack is late), and
// the write is bounded by Timeout, not by the callers.
func TestGroupCallerGivesUp(t *testing.T) {
	next := newGate()
	g := &Group{Next: next, Timeout: time.Hour}
	queued := watch(g)
	done := make(chan error, 2)
	// The caller whose call started the write gives up too.
	lead, cancelLead := context.WithCancel(context.Background())
	go func() { done <- g.Record(lead, records(9, 1)...) }()
	<-next.start
	queued(t, 1)
	cancelLead()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that started the write and gave up got %v", err)
	}
	next.ok <- struct{}{}

	go func() { done <- g.Record(context.Background(), records(0, 1)...) }()
	<-next.start
	queued(t, 1) // the first call's, before its write
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- g.Record(ctx, records(1, 1)...) }()
	queued(t, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up got %v", err)
	}
	next.ok <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n := <-next.start
	if w := next.write(n); len(w) != 1 || w[0].ID != "c1/r0" {
		t.Fatalf("the abandoned call's write: %v", w)
	}
	next.ok <- struct{}{}

	g.Timeout = time.Millisecond
	go func() { done <- g.Record(context.Background(), records(2, 1)...) }()
	<-next.start // never let go: the write's own bound ends it
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a write past its timeout: %v", err)
	}
}
