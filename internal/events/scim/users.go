package scim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

func (h *Handler) users() resource {
	return resource{name: "User", path: "Users", store: h.cfg.Store, attrs: userAttributes}
}

func userName(d Doc) string { return strings.ToLower(d.str("userName")) }

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request)   { h.get(w, r, h.users()) }
func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) { h.list(w, r, h.users()) }

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	d, err := h.readDoc(r)
	if err == nil {
		err = validateUser(d)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.del("password") // never stored
	if d.get("active") == nil {
		d.set("active", true)
	} else {
		d.set("active", d.Active())
	}
	d.set("schemas", schemasOf(d))
	h.create(w, r, h.users(), d, userName(d), errorf(409, "uniqueness", "userName %s already exists", d.str("userName")))
}

func schemasOf(d Doc) []string {
	s := []string{SchemaUser}
	if d.get(SchemaEnterprise) != nil {
		s = append(s, SchemaEnterprise)
	}
	return s
}

func validateUser(d Doc) error {
	if strings.TrimSpace(d.str("userName")) == "" {
		return errorf(400, "invalidValue", "userName is required")
	}
	if v := d.get("active"); v != nil {
		if _, ok := toBool(v); !ok {
			return errorf(400, "invalidValue", "active must be a boolean")
		}
	}
	return nil
}

func (h *Handler) replaceUser(w http.ResponseWriter, r *http.Request) {
	h.update(w, r, h.users(), func(old Doc) (Doc, error) {
		d, err := h.readDoc(r)
		if err != nil {
			return nil, err
		}
		if err := validateUser(d); err != nil {
			return nil, err
		}
		d.del("password")
		// The IdP's id is how revocations name the user: a PUT that omits
		// it (Okta's app-wizard integrations send only the profile) keeps it.
		if d.get("externalId") == nil && old.get("externalId") != nil {
			d.set("externalId", old.get("externalId"))
		}
		if d.get("active") == nil {
			d.set("active", old.Active())
		} else {
			d.set("active", d.Active())
		}
		d.set("schemas", schemasOf(d))
		return d, nil
	}, h.userEffects("PUT"), false)
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	h.update(w, r, h.users(), func(old Doc) (Doc, error) {
		d, err := patched(r, old, userAttributes)
		if err != nil {
			return nil, err
		}
		d.del("password")
		return d, validateUser(d)
	}, h.userEffects("PATCH"), false)
}

// userEffects: a change of active is an event, made durable before the
// change is stored (its ID from the version it changes, so an IdP retry
// dedupes); a new userName moves the unique index.
func (h *Handler) userEffects(how string) func(context.Context, Doc, Doc, uint64) error {
	return func(ctx context.Context, old, d Doc, rev uint64) error {
		if kind, ok := transition(old.Active(), d.Active()); ok {
			if err := h.publish(ctx, kind, d, rev, fmt.Sprintf("scim:%s active=%v", how, d.Active())); err != nil {
				return err
			}
		}
		if userName(old) != userName(d) {
			if err := h.cfg.Store.Rename(ctx, d.str("id"), userName(old), userName(d)); err != nil {
				if errors.Is(err, ErrConflict) {
					return errorf(409, "uniqueness", "userName %s already exists", d.str("userName"))
				}
				return err
			}
		}
		return nil
	}
}

func transition(was, is bool) (events.Kind, bool) {
	switch {
	case was && !is:
		return events.KindDeprovisioned, true
	case !was && is:
		return events.KindReactivated, true
	}
	return "", false
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	// Deleting an inactive user still revokes: a hard delete is the end.
	h.remove(w, r, h.users(), userName, func(ctx context.Context, d Doc, rev uint64) error {
		return h.publish(ctx, events.KindDeprovisioned, d, rev, "scim:DELETE")
	})
}

// subjectOf is who a user is for the targets: the IdP's id (externalId),
// the userName and the primary email.
func (h *Handler) subjectOf(d Doc) events.Subject {
	ext := d.str("externalId")
	return events.Subject{Issuer: h.cfg.Issuer, ID: ext, Login: d.str("userName"), Email: d.primaryEmail(),
		SCIMID: d.str("id"), ExternalID: ext}
}

// publish makes the transition durable. Its ID is derived from the user,
// the transition and the version it applies to: a retry of the same
// request (the state unchanged because we failed) yields the same ID.
func (h *Handler) publish(ctx context.Context, kind events.Kind, d Doc, rev uint64, cause string) error {
	raw, _ := json.Marshal(d)
	now := h.cfg.Now().UTC()
	return h.publishEvents(ctx, []events.Event{{
		ID: eventID(d.str("id"), string(kind), cause, rev), Source: events.SourceSCIM, Kind: kind, Subject: h.subjectOf(d),
		OccurredAt: now, ReceivedAt: now, Cause: cause, Raw: raw,
	}})
}

func eventID(parts ...any) string {
	sum := sha256.Sum256([]byte(fmt.Sprint(parts...)))
	return "scim:" + hex.EncodeToString(sum[:16])
}

func (h *Handler) publishEvents(ctx context.Context, evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	defer cancel()
	if _, err := h.cfg.Publisher.PublishEvents(pctx, evs); err != nil {
		return fmt.Errorf("publish scim events: %w", err)
	}
	return nil
}
