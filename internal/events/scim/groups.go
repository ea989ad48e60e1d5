package scim

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

var groupAttributes = map[string]bool{"id": true, "externalid": true, "displayname": true, "members": true, "meta": true, "schemas": true}

func (h *Handler) groups() resource {
	return resource{name: "Group", path: "Groups", store: h.cfg.Groups, attrs: groupAttributes}
}

func noUnique(Doc) string { return "" }

func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request)   { h.get(w, r, h.groups()) }
func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) { h.list(w, r, h.groups()) }

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request) {
	d, err := h.readDoc(r)
	if err == nil && strings.TrimSpace(d.str("displayName")) == "" {
		err = errorf(400, "invalidValue", "displayName is required")
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.set("schemas", []string{SchemaGroup})
	h.create(w, r, h.groups(), d, "", nil)
}

// patchGroup answers 204, as Entra expects for groups.
func (h *Handler) patchGroup(w http.ResponseWriter, r *http.Request) {
	h.update(w, r, h.groups(), func(old Doc) (Doc, error) { return patched(r, old, groupAttributes) }, h.groupEffects, true)
}

func (h *Handler) replaceGroup(w http.ResponseWriter, r *http.Request) {
	h.update(w, r, h.groups(), func(Doc) (Doc, error) {
		d, err := h.readDoc(r)
		if err != nil {
			return nil, err
		}
		d.set("schemas", []string{SchemaGroup})
		return d, nil
	}, h.groupEffects, false)
}

func (h *Handler) groupEffects(ctx context.Context, old, d Doc, rev uint64) error {
	return h.publishRemovals(ctx, old, members(d), rev)
}

// deleteGroup: everyone left in the group loses what it gave.
func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) {
	h.remove(w, r, h.groups(), noUnique, func(ctx context.Context, d Doc, rev uint64) error {
		return h.publishRemovals(ctx, d, nil, rev)
	})
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

// publishRemovals makes one access_removed event, scoped to the group, per
// member of group that is not in after.
func (h *Handler) publishRemovals(ctx context.Context, group Doc, after []string, rev uint64) error {
	var evs []events.Event
	now := h.cfg.Now().UTC()
	ref := events.ScopeRef{ID: group.str("id"), Name: group.str("displayName")}
	if ext := group.str("externalId"); ext != "" {
		ref.ID = ext // the IdP's group id, as targets name it
	}
	for _, m := range members(group) {
		if slices.Contains(after, m) {
			continue
		}
		subject := events.Subject{Issuer: h.cfg.Issuer, SCIMID: m}
		if u, _, err := h.load(ctx, h.users(), m); err == nil {
			subject = h.subjectOf(u)
		}
		if subject.Empty() {
			continue
		}
		evs = append(evs, events.Event{ID: eventID(group.str("id"), m, "removed", rev), Source: events.SourceSCIM,
			Kind: events.KindAccessRemoved, Subject: subject, Scope: events.Scope{Groups: []events.ScopeRef{ref}},
			OccurredAt: now, ReceivedAt: now, Cause: "scim:group member removed"})
	}
	return h.publishEvents(ctx, evs)
}
