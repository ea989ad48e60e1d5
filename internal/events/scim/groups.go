package scim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

var groupAttributes = map[string]bool{"id": true, "externalid": true, "displayname": true, "members": true, "meta": true, "schemas": true}

func (h *Handler) decorateGroup(d Doc, rev uint64) Doc {
	meta, _ := d.get("meta").(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["resourceType"] = "Group"
	meta["version"] = fmt.Sprintf(`W/"%d"`, rev)
	meta["location"] = h.cfg.BaseURL + Prefix + "/Groups/" + d.str("id")
	d.set("meta", meta)
	return d
}

func (h *Handler) loadGroup(ctx context.Context, id string) (Doc, uint64, error) {
	raw, rev, err := h.cfg.Groups.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, errorf(404, "", "Resource %s not found", id)
	}
	if err != nil {
		return nil, 0, err
	}
	var d Doc
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, 0, fmt.Errorf("stored group %s: %w", id, err)
	}
	return h.decorateGroup(d, rev), rev, nil
}

func (h *Handler) listGroupsStored(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	raws, err := h.cfg.Groups.List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var all []Doc
	for _, raw := range raws {
		var d Doc
		if json.Unmarshal(raw, &d) == nil && f.match(d) {
			all = append(all, d)
		}
	}
	slices.SortFunc(all, func(a, b Doc) int { return strings.Compare(a.str("id"), b.str("id")) })
	start, count := 1, 100
	if n, err := strconv.Atoi(q.Get("startIndex")); err == nil && n > 1 {
		start = n
	}
	if n, err := strconv.Atoi(q.Get("count")); err == nil && n >= 0 {
		count = min(n, 1000)
	}
	page := []any{}
	for i := start - 1; i < len(all) && len(page) < count; i++ {
		page = append(page, project(h.decorateGroup(all[i], 0), r))
	}
	writeSCIM(w, 200, map[string]any{"schemas": []string{SchemaList}, "totalResults": len(all), "startIndex": start,
		"itemsPerPage": len(page), "Resources": page})
}

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request) {
	d, err := h.readDoc(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if strings.TrimSpace(d.str("displayName")) == "" {
		h.fail(w, r, errorf(400, "invalidValue", "displayName is required"))
		return
	}
	id := uuid.NewString()
	d.set("id", id)
	d.set("schemas", []string{SchemaGroup})
	now := h.cfg.Now().UTC().Format(time.RFC3339)
	d.set("meta", map[string]any{"resourceType": "Group", "created": now, "lastModified": now})
	raw, _ := json.Marshal(d)
	if err := h.cfg.Groups.Create(r.Context(), id, "", raw); err != nil {
		h.fail(w, r, err)
		return
	}
	d, rev, err := h.loadGroup(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", h.cfg.BaseURL+Prefix+"/Groups/"+id)
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, rev))
	writeSCIM(w, 201, d)
}

func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request) {
	d, rev, err := h.loadGroup(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, rev))
	writeSCIM(w, 200, project(d, r))
}

func (h *Handler) patchGroup(w http.ResponseWriter, r *http.Request) {
	h.changeGroup(w, r, func(old Doc) (Doc, error) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, errorf(400, "invalidSyntax", "reading body: %v", err)
		}
		var p patchRequest
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, errorf(400, "invalidSyntax", "body is not a PatchOp: %v", err)
		}
		d := cloneDoc(old)
		if err := applyPatch(d, p.Operations, groupAttributes); err != nil {
			return nil, err
		}
		d.set("id", old.str("id"))
		return d, nil
	}, false)
}

func (h *Handler) replaceGroup(w http.ResponseWriter, r *http.Request) {
	h.changeGroup(w, r, func(old Doc) (Doc, error) {
		d, err := h.readDoc(r)
		if err != nil {
			return nil, err
		}
		d.set("id", old.str("id"))
		d.set("meta", old.get("meta"))
		d.set("schemas", []string{SchemaGroup})
		return d, nil
	}, true)
}

// changeGroup publishes one access_removed event per member that left the
// group (scoped to the group), then stores the group.
func (h *Handler) changeGroup(w http.ResponseWriter, r *http.Request, apply func(Doc) (Doc, error), full bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	old, rev, err := h.loadGroup(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != fmt.Sprintf(`W/"%d"`, rev) {
		h.fail(w, r, errorf(412, "", "version mismatch"))
		return
	}
	d, err := apply(old)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.publishRemovals(ctx, old, members(old), members(d), rev); err != nil {
		h.fail(w, r, err)
		return
	}
	meta, _ := d.get("meta").(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["lastModified"] = h.cfg.Now().UTC().Format(time.RFC3339)
	delete(meta, "version")
	delete(meta, "location")
	d.set("meta", meta)
	raw, _ := json.Marshal(d)
	if err := h.cfg.Groups.Update(ctx, id, raw, rev); err != nil {
		if errors.Is(err, ErrConflict) {
			h.fail(w, r, errorf(412, "", "the group changed meanwhile; retry"))
			return
		}
		h.fail(w, r, err)
		return
	}
	if !full {
		w.WriteHeader(http.StatusNoContent) // Entra expects 204 for group PATCH
		return
	}
	d, rev, err = h.loadGroup(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, rev))
	writeSCIM(w, 200, d)
}

func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	old, rev, err := h.loadGroup(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.publishRemovals(ctx, old, members(old), nil, rev); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.cfg.Groups.Delete(ctx, id, ""); err != nil && !errors.Is(err, ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func members(d Doc) []string {
	list, _ := d.get("members").([]any)
	var out []string
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			if v := Doc(mm).str("value"); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// publishRemovals makes one event per member of before that is not in
// after: the user lost what this group gave.
func (h *Handler) publishRemovals(ctx context.Context, group Doc, before, after []string, rev uint64) error {
	var evs []events.Event
	now := h.cfg.Now().UTC()
	ref := events.ScopeRef{ID: group.str("id"), Name: group.str("displayName")}
	if ext := group.str("externalId"); ext != "" {
		ref.ID = ext // the IdP's group id, as targets name it
	}
	for _, m := range before {
		if slices.Contains(after, m) {
			continue
		}
		subject := events.Subject{Issuer: h.cfg.Issuer, SCIMID: m}
		if u, _, err := h.load(ctx, m); err == nil {
			subject.ID, subject.ExternalID, subject.Login, subject.Email = u.str("externalId"), u.str("externalId"), u.str("userName"), u.primaryEmail()
		}
		if subject.Empty() {
			continue
		}
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|removed|%d", group.str("id"), m, rev)))
		evs = append(evs, events.Event{ID: "scim:" + hex.EncodeToString(sum[:16]), Source: events.SourceSCIM, Kind: events.KindAccessRemoved,
			Subject: subject, Scope: events.Scope{Groups: []events.ScopeRef{ref}}, OccurredAt: now, ReceivedAt: now,
			Cause: "scim:group member removed"})
	}
	if len(evs) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	defer cancel()
	if _, err := h.cfg.Publisher.PublishEvents(pctx, evs); err != nil {
		return fmt.Errorf("publish scim group events: %w", err)
	}
	return nil
}
