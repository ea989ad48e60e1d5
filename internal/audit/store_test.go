package audit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func rec(t *testing.T, seq uint64, typ Type, email, target string) Entry {
	t.Helper()
	e, err := NewEntry(seq, Record{ID: fmt.Sprintf("r%d", seq), Time: time.Unix(1700000000+int64(seq), 0).UTC(), Type: typ,
		EventID: "okta:e" + fmt.Sprint(seq%3), Subject: &Subject{Email: email, Login: email}, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStoreChainsAndQueries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := []Entry{
		rec(t, 1, TypeEventReceived, "Jane@Example.com", ""),
		rec(t, 2, TypeRevocationPlanned, "jane@example.com", "as1"),
		rec(t, 3, TypeRevocationSucceeded, "jane@example.com", "as1"),
		rec(t, 4, TypeEventReceived, "bob@example.com", ""),
	}
	if err := s.Append(ctx, batch[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, batch[2:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []Entry{rec(t, 6, TypeEventReceived, "x@example.com", "")}); !errors.Is(err, ErrGap) {
		t.Fatalf("a gap was accepted: %v", err)
	}
	if err := s.Append(ctx, []Entry{rec(t, 4, TypeEventReceived, "x@example.com", "")}); !errors.Is(err, ErrGap) {
		t.Fatalf("a repeated seq was accepted: %v", err)
	}

	// Reopening finds the same head.
	head := s.Head()
	s.Close()
	s, err = OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if h := s.Head(); h.Seq != 4 || fmt.Sprintf("%x", h.Hash) != fmt.Sprintf("%x", head.Hash) {
		t.Fatalf("head after reopen %d %x, want 4 %x", h.Seq, h.Hash, head.Hash)
	}

	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{Subject: "JANE@example.com"}, "[1 2 3]"},
		{Filter{Subject: "bob@example.com"}, "[4]"},
		{Filter{Target: "as1", Type: string(TypeRevocationSucceeded)}, "[3]"},
		{Filter{Subject: "jane@example.com", After: 1, Limit: 1}, "[2]"},
		{Filter{Since: time.Unix(1700000003, 0)}, "[3 4]"},
		{Filter{EventID: "okta:e1"}, "[1 4]"},
	} {
		recs, err := r.Query(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, x := range recs {
			seqs = append(seqs, x.Seq)
		}
		if fmt.Sprint(seqs) != c.want {
			t.Errorf("%+v: got %v, want %s", c.f, seqs, c.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"30d":                  now.Add(-30 * 24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseTime("yesterday", now); err == nil {
		t.Error("nonsense accepted")
	}
}
