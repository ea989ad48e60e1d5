// Package scimtest is the conformance suite of SCIM stores (scim.Store):
// the memory store and the NATS KV one keep the same contract.
package scimtest

import (
	"context"
	"errors"
	"testing"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events/scim"
)

// RunStore checks a fresh, empty store.
func RunStore(t *testing.T, s scim.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	create := func(id, unique, doc string) error { _, err := s.Create(ctx, id, unique, []byte(doc)); return err }
	if _, _, err := s.Get(ctx, "nobody"); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("get of a missing id: %v, want ErrNotFound", err)
	}
	created, err := s.Create(ctx, "a", "ann@x.example", []byte(`{"v":1}`))
	must("create a", err)
	doc, rev, err := s.Get(ctx, "a")
	if err != nil || string(doc) != `{"v":1}` || rev == 0 || rev != created {
		t.Fatalf("get a: %s %d %v (create said revision %d)", doc, rev, err, created)
	}
	if err := create("b", "ann@x.example", `{}`); !errors.Is(err, scim.ErrConflict) {
		t.Errorf("a taken unique key: %v, want ErrConflict", err)
	}
	if _, _, err := s.Get(ctx, "b"); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("a refused create left a document: %v", err)
	}
	if err := create("a", "other@x.example", `{}`); err == nil {
		t.Error("a second create of one id succeeded")
	}
	// …and did not keep the unique key it could not use.
	must("the key of a refused create is free", create("e", "other@x.example", `{}`))
	must("delete e", s.Delete(ctx, "e", "other@x.example"))
	// Resources without a unique key (groups) do not collide.
	must("create g1", create("g1", "", `{"g":1}`))
	must("create g2", create("g2", "", `{"g":2}`))

	updated, err := s.Update(ctx, "a", []byte(`{"v":2}`), rev)
	must("update a", err)
	_, rev2, _ := s.Get(ctx, "a")
	if rev2 <= rev || rev2 != updated {
		t.Errorf("revision after update %d (update said %d), before %d", rev2, updated, rev)
	}
	if _, err := s.Update(ctx, "a", []byte(`{"v":3}`), rev); !errors.Is(err, scim.ErrConflict) {
		t.Errorf("update at a stale revision: %v, want ErrConflict", err)
	}
	if doc, _, _ := s.Get(ctx, "a"); string(doc) != `{"v":2}` {
		t.Errorf("a refused update changed the document: %s", doc)
	}

	must("create c", create("c", "cy@x.example", `{}`))
	if err := s.Rename(ctx, "a", "ann@x.example", "cy@x.example"); !errors.Is(err, scim.ErrConflict) {
		t.Errorf("rename onto a taken key: %v, want ErrConflict", err)
	}
	must("rename a", s.Rename(ctx, "a", "ann@x.example", "anna@x.example"))
	if err := create("d", "anna@x.example", `{}`); !errors.Is(err, scim.ErrConflict) {
		t.Errorf("the renamed key is free: %v", err)
	}
	must("the old key is free", create("d", "ann@x.example", `{}`))

	list, err := s.List(ctx)
	must("list", err)
	revs := map[string]uint64{}
	for _, st := range list {
		revs[string(st.Doc)] = st.Rev
	}
	if len(list) != 5 || revs[`{"v":2}`] != rev2 {
		t.Errorf("list: %d documents, a at revision %d (get says %d)", len(list), revs[`{"v":2}`], rev2)
	}

	must("delete c", s.Delete(ctx, "c", "cy@x.example"))
	if _, _, err := s.Get(ctx, "c"); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	must("delete c again", s.Delete(ctx, "c", "cy@x.example"))
	if list, _ := s.List(ctx); len(list) != 4 {
		t.Errorf("list after delete: %d documents, want 4", len(list))
	}
	must("the deleted key is free", create("c2", "cy@x.example", `{"again":true}`))
	must("an id is usable again after delete", create("c", "", `{"again":true}`))
}
