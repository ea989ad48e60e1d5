package revoke

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/klauspost/compress/s2"

	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
)

// A batch travels packed (decision 0021); the executor runs a packed batch
// as the plain one, and dead-letters one it cannot unpack, with a record
// and its bytes kept — never a silent drop.
func TestPackedBatchesRunAndUnreadableOnesAreDeadLettered(t *testing.T) {
	now := time.Unix(1000, 0)
	drv := &bySubject{calls: map[string]int{}}
	e, q, rec, _ := executor(t, drv, func() time.Time { return now }, nil)

	jobs := batchOf(20)
	plain, err := json.Marshal(Batch{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	body, encoding := packed.Pack(plain)
	if encoding != packed.S2Dict1 {
		t.Fatalf("a batch of %d bytes was packed as %q", len(plain), encoding)
	}
	msg := func(data []byte, encoding string) *message.Message {
		m := message.NewMessage("REVOKE/1", data)
		m.Metadata.Set(BatchHeader, strconv.Itoa(len(jobs)))
		m.Metadata.Set(BatchIDHeader, "batch/1")
		if encoding != "" {
			m.Metadata.Set(packed.EncodingHeader, encoding)
		}
		return m
	}

	if err := e.Handler(msg(body, encoding)); err != nil {
		t.Fatal(err)
	}
	if len(drv.calls) != len(jobs) || len(q.dead) != 0 {
		t.Fatalf("%d subjects revoked, %d dead letters; want %d, 0", len(drv.calls), len(q.dead), len(jobs))
	}
	for _, j := range jobs {
		if drv.calls[j.Subject.Email] != 1 {
			t.Errorf("%s revoked %d times", j.Subject.Email, drv.calls[j.Subject.Email])
		}
	}

	// A single job packed as an earlier version packed (S2 without a
	// dictionary; the sink packs only batches; a reader takes both).
	one, err := json.Marshal(jobs[0])
	if err != nil {
		t.Fatal(err)
	}
	single := message.NewMessage("REVOKE/2", s2.Encode(nil, one))
	single.Metadata.Set(packed.EncodingHeader, packed.S2)
	if err := e.Handler(single); err != nil {
		t.Fatal(err)
	}
	if drv.calls[jobs[0].Subject.Email] != 2 || len(q.dead) != 0 {
		t.Fatalf("a packed single job: %d calls, %d dead letters", drv.calls[jobs[0].Subject.Email], len(q.dead))
	}

	// Unreadable: not S2 under an S2 header, an unknown encoding, and a
	// packed body that claims more than a body may be.
	bomb := s2.Encode(nil, []byte(strings.Repeat("x", packed.MaxBody)))
	bomb = append([]byte{0x80, 0x80, 0x80, 0x04}, bomb[3:]...) // its length prefix says 8 MiB
	cases := []struct {
		data     []byte
		encoding string
		reason   string
	}{
		{plain, packed.S2, "undecodable message (its bytes in base64): unreadable packed body"},
		{plain, "gzip", `unreadable packed body: encoding "gzip"`},
		{bomb, packed.S2, "more than 1048576"},
		{bomb, packed.S2Dict1, "more than 1048576"},
		// Nearly the largest message: its dead letter keeps the first 256 KiB.
		{[]byte(strings.Repeat("x", 1000<<10)), "gzip", "(its first 262144 of 1365336 bytes kept)"},
	}
	for i, c := range cases {
		recs := len(rec.recs)
		if err := e.Handler(msg(c.data, c.encoding)); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(q.dead) != i+1 {
			t.Fatalf("case %d: %d dead letters, want %d", i, len(q.dead), i+1)
		}
		dl := q.dead[i]
		want := base64.StdEncoding.EncodeToString(c.data)
		if len(want) > 256<<10 {
			want = want[:256<<10]
		}
		if dl.Job.Cause != want || !strings.Contains(dl.Reason, c.reason) {
			t.Errorf("case %d: dead letter %q, kept %d bytes %.40q; want %d and %q", i, dl.Reason, len(dl.Job.Cause), dl.Job.Cause, len(want), c.reason)
		}
		if len(rec.recs) == recs {
			t.Errorf("case %d: no record of the dead letter", i)
		}
	}
	if len(drv.calls) != len(jobs) {
		t.Errorf("an unreadable batch reached the target: %d subjects", len(drv.calls))
	}
}
