package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// nats.pack: false writes the AUDIT stream plain; the same data dir started
// again with packing (the default) goes on packed, and one index reads both
// into one unbroken, verified trail — what a rolling upgrade leaves in the
// stream (decisions 0021, 0024).
func TestPlainThenPackedShareOneTrail(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	dir := t.TempDir()
	targets := gtrTarget("as1", peer.URL, "email") + gtrTarget("as2", peer.URL, "email")
	users := func(delivery string) []string {
		var us []string
		for i := range 30 {
			us = append(us, fmt.Sprintf("%s-u%d@example.com", delivery, i))
		}
		return us
	}
	// packedMsgs counts the AUDIT messages from seq on that carry the header.
	packedMsgs := func(w *worker, from uint64) (n, last uint64) {
		t.Helper()
		s, err := w.inst.bus.JetStream().Stream(context.Background(), bus.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for seq := from; seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(context.Background(), seq)
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.Get(packed.EncodingHeader) != "" {
				n++
			}
		}
		return n, info.State.LastSeq
	}

	plain := testConfig(t, dir, targets)
	no := false
	plain.NATS.Pack = &no
	w := startWorker(t, plain)
	setJWKS(peer, w)
	if resp := w.postHook(deactivation("p1", users("p1")...), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	w.idle(30 * time.Second)
	n, last := packedMsgs(w, 1)
	if n != 0 || last < 3 {
		t.Fatalf("nats.pack false: %d of %d AUDIT messages packed", n, last)
	}
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}

	w2 := startWorker(t, testConfig(t, dir, targets))
	setJWKS(peer, w2)
	if resp := w2.postHook(deactivation("p2", users("p2")...), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	w2.idle(30 * time.Second)
	if n, _ := packedMsgs(w2, last+1); n == 0 {
		t.Fatal("packing on: no AUDIT message packed")
	}
	if rej := peer.Rejected(); len(rej) > 0 {
		t.Fatalf("receiver rejected: %v", rej)
	}
	if got := len(w2.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})); got != 2*60 {
		t.Fatalf("%d revocations on record, want %d", got, 2*60)
	}
	for i, r := range w2.audit(audit.Filter{Repeats: true}) {
		if r.Seq != uint64(i+1) || r.Type == audit.TypeEventRejected {
			t.Fatalf("record %d: seq %d, %s %s", i+1, r.Seq, r.Type, r.Error)
		}
	}
	if res := head(t, w2); res.Problem != nil || res.Records == 0 {
		t.Fatalf("verify: %+v", res)
	}
}
