package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// resource is one SCIM resource type and where it is kept; everything
// that does not depend on being a User or a Group is done here once.
type resource struct {
	name  string          // "User" | "Group": meta.resourceType
	path  string          // "Users" | "Groups": the endpoint
	store Store           // the documents
	attrs map[string]bool // the attributes a PATCH path may name
}

func etag(rev uint64) string { return fmt.Sprintf(`W/"%d"`, rev) }

// decorate sets the server-owned meta members.
func (h *Handler) decorate(res resource, d Doc, rev uint64) Doc {
	meta, _ := d.get("meta").(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["resourceType"] = res.name
	meta["version"] = etag(rev)
	meta["location"] = h.cfg.BaseURL + Prefix + "/" + res.path + "/" + d.str("id")
	d.set("meta", meta)
	return d
}

func (h *Handler) load(ctx context.Context, res resource, id string) (Doc, uint64, error) {
	raw, rev, err := res.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, errorf(404, "", "Resource %s not found", id)
	}
	if err != nil {
		return nil, 0, err
	}
	var d Doc
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, 0, fmt.Errorf("stored %s %s: %w", res.name, id, err)
	}
	return h.decorate(res, d, rev), rev, nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, res resource) {
	d, rev, err := h.load(r.Context(), res, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(rev))
	writeSCIM(w, 200, project(d, r))
}

// list filters, orders by id (a stable order: Okta's import pages) and
// pages with startIndex/count.
func (h *Handler) list(w http.ResponseWriter, r *http.Request, res resource) {
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	start, count := 1, 100
	if n, err := strconv.Atoi(q.Get("startIndex")); err == nil && n > 1 {
		start = n
	}
	if n, err := strconv.Atoi(q.Get("count")); err == nil {
		count = min(max(n, 0), 1000) // §3.4.2.4: a negative count is 0
	}
	stored, err := res.store.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type entry struct {
		d   Doc
		rev uint64
	}
	var all []entry
	for _, s := range stored {
		var d Doc
		if json.Unmarshal(s.Doc, &d) == nil && f.match(d) {
			all = append(all, entry{d, s.Rev})
		}
	}
	slices.SortFunc(all, func(a, b entry) int { return strings.Compare(a.d.str("id"), b.d.str("id")) })
	page := []any{}
	for i := start - 1; i < len(all) && len(page) < count; i++ {
		// The same version a GET gives: If-Match with a listed version works.
		page = append(page, project(h.decorate(res, all[i].d, all[i].rev), r))
	}
	writeSCIM(w, 200, map[string]any{"schemas": []string{SchemaList}, "totalResults": len(all), "startIndex": start,
		"itemsPerPage": len(page), "Resources": page})
}

// create stores a new resource under a fresh id; unique is its unique key
// ("" for none) and conflict what a taken key means.
func (h *Handler) create(w http.ResponseWriter, r *http.Request, res resource, d Doc, unique string, conflict *scimError) {
	id := uuid.NewString()
	d.set("id", id)
	now := h.cfg.Now().UTC().Format(time.RFC3339)
	d.set("meta", map[string]any{"resourceType": res.name, "created": now, "lastModified": now})
	raw, _ := json.Marshal(d)
	rev, err := res.store.Create(r.Context(), id, unique, raw)
	if err != nil {
		if errors.Is(err, ErrConflict) && conflict != nil {
			err = conflict
		}
		h.fail(w, r, err)
		return
	}
	// The answer is what was stored, not a read of it: on a cluster the
	// read may reach a replica that has not applied the write yet.
	d = h.decorate(res, d, rev)
	w.Header().Set("Location", h.cfg.BaseURL+Prefix+"/"+res.path+"/"+id)
	w.Header().Set("ETag", etag(rev))
	writeSCIM(w, 201, d)
}

// update is PUT and PATCH: If-Match, apply, then effects (the events made
// durable, any index moves) before the new state is stored with
// compare-and-set — so a failure leaves the old state, and the IdP's retry
// repeats the same effects with the same IDs. noContent answers 204.
func (h *Handler) update(w http.ResponseWriter, r *http.Request, res resource, apply func(old Doc) (Doc, error),
	effects func(ctx context.Context, old, d Doc, rev uint64) error, noContent bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	old, rev, err := h.load(ctx, res, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != etag(rev) {
		h.fail(w, r, errorf(412, "", "version %s does not match %s", m, etag(rev)))
		return
	}
	d, err := apply(old)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.set("id", id)
	if err := effects(ctx, old, d, rev); err != nil {
		h.fail(w, r, err)
		return
	}
	meta, _ := old.get("meta").(map[string]any)
	meta["lastModified"] = h.cfg.Now().UTC().Format(time.RFC3339)
	delete(meta, "version")
	delete(meta, "location")
	d.set("meta", meta)
	raw, _ := json.Marshal(d)
	if rev, err = res.store.Update(ctx, id, raw, rev); err != nil {
		if errors.Is(err, ErrConflict) {
			err = errorf(412, "", "the %s changed meanwhile; retry", strings.ToLower(res.name))
		}
		h.fail(w, r, err)
		return
	}
	if noContent {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	d = h.decorate(res, d, rev) // what was stored (see create)
	w.Header().Set("ETag", etag(rev))
	writeSCIM(w, 200, d)
}

// remove deletes a resource after its effects are durable.
func (h *Handler) remove(w http.ResponseWriter, r *http.Request, res resource, unique func(Doc) string,
	effects func(ctx context.Context, d Doc, rev uint64) error) {
	ctx := r.Context()
	id := r.PathValue("id")
	d, rev, err := h.load(ctx, res, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := effects(ctx, d, rev); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := res.store.Delete(ctx, id, unique(d)); err != nil && !errors.Is(err, ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// patched reads a PatchOp body and applies it to a copy of old.
func patched(r *http.Request, old Doc, attrs map[string]bool) (Doc, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, errorf(400, "invalidSyntax", "reading body: %v", err)
	}
	var p patchRequest
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, errorf(400, "invalidSyntax", "body is not a PatchOp: %v", err)
	}
	d := cloneDoc(old)
	if err := applyPatch(d, p.Operations, attrs); err != nil {
		return nil, err
	}
	return d, nil
}

func cloneDoc(d Doc) Doc {
	raw, _ := json.Marshal(d)
	var c Doc
	_ = json.Unmarshal(raw, &c)
	return c
}

// project applies attributes / excludedAttributes (top level; id, schemas
// and meta are always returned).
func project(d Doc, r *http.Request) Doc {
	q := r.URL.Query()
	if a := q.Get("attributes"); a != "" {
		out := Doc{}
		for _, k := range []string{"id", "schemas", "meta"} {
			if v := d.get(k); v != nil {
				out[k] = v
			}
		}
		for _, name := range strings.Split(a, ",") {
			// "emails[type eq \"work\"]" (not RFC syntax, but sent): the attribute.
			name, _, _ = strings.Cut(name, "[")
			top, _, _ := strings.Cut(strings.TrimSpace(name), ".")
			if k, ok := d.key(top); ok {
				out[k] = d[k]
			}
		}
		return out
	}
	if ex := q.Get("excludedAttributes"); ex != "" {
		for _, name := range strings.Split(ex, ",") {
			if n := strings.TrimSpace(name); !slices.Contains([]string{"id", "schemas", "meta"}, strings.ToLower(n)) {
				d.del(n)
			}
		}
	}
	return d
}
