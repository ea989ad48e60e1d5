package scim

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Config configures the service provider.
type Config struct {
	Tokens  []string // accepted bearer tokens (several, for rotation)
	BaseURL string   // our public URL; Location and meta.location build on it
	// Issuer is the IdP's issuer for iss_sub subjects (optional).
	Issuer         string
	MaxBody        int64
	PublishTimeout time.Duration
	Store          Store // users
	Groups         Store // groups (nil: /Groups lists nothing)
	Publisher      events.Publisher
	Recorder       audit.Recorder
	Now            func() time.Time
	Log            *slog.Logger
}

// Handler serves /scim/v2/.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// Prefix is where the service provider is mounted.
const Prefix = "/scim/v2"

// New validates cfg and builds the routes.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Publisher == nil || cfg.Recorder == nil || cfg.Now == nil || cfg.Log == nil || cfg.MaxBody <= 0 || cfg.PublishTimeout <= 0 {
		return nil, errors.New("scim: store, publisher, recorder, clock, logger, body limit and publish timeout are required")
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	if len(cfg.Tokens) == 0 {
		cfg.Log.Warn("SCIM has no token configured: every request will be refused (set scim.tokens)")
	}
	h.mux.HandleFunc("GET "+Prefix+"/ServiceProviderConfig", h.serviceProviderConfig)
	h.mux.HandleFunc("GET "+Prefix+"/ResourceTypes", h.resourceTypes)
	h.mux.HandleFunc("GET "+Prefix+"/Schemas", h.schemas)
	h.mux.HandleFunc("GET "+Prefix+"/Users", h.listUsers)
	h.mux.HandleFunc("POST "+Prefix+"/Users", h.createUser)
	h.mux.HandleFunc("GET "+Prefix+"/Users/{id}", h.getUser)
	h.mux.HandleFunc("PUT "+Prefix+"/Users/{id}", h.replaceUser)
	h.mux.HandleFunc("PATCH "+Prefix+"/Users/{id}", h.patchUser)
	h.mux.HandleFunc("DELETE "+Prefix+"/Users/{id}", h.deleteUser)
	if cfg.Groups != nil {
		h.mux.HandleFunc("GET "+Prefix+"/Groups", h.listGroupsStored)
		h.mux.HandleFunc("POST "+Prefix+"/Groups", h.createGroup)
		h.mux.HandleFunc("GET "+Prefix+"/Groups/{id}", h.getGroup)
		h.mux.HandleFunc("PUT "+Prefix+"/Groups/{id}", h.replaceGroup)
		h.mux.HandleFunc("PATCH "+Prefix+"/Groups/{id}", h.patchGroup)
		h.mux.HandleFunc("DELETE "+Prefix+"/Groups/{id}", h.deleteGroup)
	} else {
		h.mux.HandleFunc("GET "+Prefix+"/Groups", h.listGroups)
	}
	h.mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, errorf(404, "", "no SCIM endpoint %s %s", r.Method, r.URL.Path))
	})
	return h, nil
}

// ServeHTTP authenticates, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	ok := 0
	for _, t := range h.cfg.Tokens {
		if t != "" {
			ok |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
		}
	}
	if ok != 1 || got == "" {
		h.record(r, audit.Record{Type: audit.TypeAuthFailed, Outcome: "rejected", Error: "missing or wrong SCIM bearer token",
			Detail: audit.Detail(map[string]any{"method": r.Method, "path": r.URL.Path})})
		w.Header().Set("WWW-Authenticate", `Bearer realm="lifecycle-worker-scim"`)
		writeSCIM(w, 401, errorBody(errorf(401, "", "authentication required")))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	r.URL.Path = canonicalPath(r.URL.Path)
	h.mux.ServeHTTP(w, r)
}

// endpoints are the resource endpoint names, by lower case: clients differ
// in case (Entra's tooling asks for /users) and in trailing slashes, and
// one old Microsoft client calls the service provider config
// /serviceConfiguration.
var endpoints = map[string]string{
	"users": "Users", "groups": "Groups", "schemas": "Schemas", "resourcetypes": "ResourceTypes",
	"serviceproviderconfig": "ServiceProviderConfig", "serviceproviderconfigs": "ServiceProviderConfig",
	"serviceconfiguration": "ServiceProviderConfig",
}

func canonicalPath(p string) string {
	rest, ok := strings.CutPrefix(p, Prefix+"/")
	if !ok {
		return p
	}
	rest = strings.TrimSuffix(rest, "/")
	name, tail, _ := strings.Cut(rest, "/")
	if canon, ok := endpoints[strings.ToLower(name)]; ok {
		name = canon
	}
	if tail != "" {
		return Prefix + "/" + name + "/" + tail
	}
	return Prefix + "/" + name
}

func errorBody(e *scimError) map[string]any {
	b := map[string]any{"schemas": []string{SchemaError}, "status": strconv.Itoa(e.status), "detail": e.detail}
	if e.scimType != "" {
		b["scimType"] = e.scimType
	}
	return b
}

func writeSCIM(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// fail answers a SCIM error; refusals of requests (4xx) are on record.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *scimError
	if !errors.As(err, &e) {
		h.cfg.Log.ErrorContext(r.Context(), "scim", "path", r.URL.Path, "err", err)
		e = errorf(503, "", "temporarily unavailable; retry")
	}
	if e.status >= 400 && e.status < 500 {
		h.record(r, audit.Record{Type: audit.TypeEventRejected, Outcome: "rejected", HTTPStatus: e.status,
			Error: strings.TrimSpace(e.scimType + " " + e.detail), Detail: audit.Detail(map[string]any{"method": r.Method, "path": r.URL.Path})})
	}
	writeSCIM(w, e.status, errorBody(e))
}

func (h *Handler) record(r *http.Request, rec audit.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.cfg.PublishTimeout)
	defer cancel()
	rec.ID, rec.Time, rec.Source = "scim/"+uuid.NewString(), h.cfg.Now().UTC(), string(events.SourceSCIM)
	if err := h.cfg.Recorder.Record(ctx, rec); err != nil {
		h.cfg.Log.ErrorContext(ctx, "scim: audit record lost", "type", rec.Type, "err", err)
	}
}

func (h *Handler) readDoc(r *http.Request) (Doc, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(413, "", "body larger than %d bytes", h.cfg.MaxBody)
		}
		return nil, errorf(400, "invalidSyntax", "reading body: %v", err)
	}
	var d Doc
	if err := json.Unmarshal(body, &d); err != nil || d == nil {
		return nil, errorf(400, "invalidSyntax", "body is not a JSON object")
	}
	return d, nil
}

// --- discovery -------------------------------------------------------------

func (h *Handler) serviceProviderConfig(w http.ResponseWriter, _ *http.Request) {
	writeSCIM(w, 200, map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": h.cfg.BaseURL,
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": 1000},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []map[string]any{{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
			"description": "Authentication with a bearer token", "primary": true}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": h.cfg.BaseURL + Prefix + "/ServiceProviderConfig"},
	})
}

func (h *Handler) resourceTypes(w http.ResponseWriter, _ *http.Request) {
	rt := func(name, endpoint, schema string) map[string]any {
		return map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": name, "name": name,
			"endpoint": endpoint, "schema": schema, "meta": map[string]any{"resourceType": "ResourceType", "location": h.cfg.BaseURL + Prefix + "/ResourceTypes/" + name}}
	}
	user := rt("User", "/Users", SchemaUser)
	user["schemaExtensions"] = []map[string]any{{"schema": SchemaEnterprise, "required": false}}
	list(w, []any{user, rt("Group", "/Groups", SchemaGroup)}, 1)
}

func (h *Handler) schemas(w http.ResponseWriter, _ *http.Request) {
	attr := func(name, typ string, multi, required bool) map[string]any {
		return map[string]any{"name": name, "type": typ, "multiValued": multi, "required": required, "caseExact": false,
			"mutability": "readWrite", "returned": "default", "uniqueness": map[bool]string{true: "server", false: "none"}[name == "userName"]}
	}
	user := map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}, "id": SchemaUser, "name": "User", "description": "User Account",
		"attributes": []any{attr("userName", "string", false, true), attr("name", "complex", false, false), attr("displayName", "string", false, false),
			attr("emails", "complex", true, false), attr("active", "boolean", false, false), attr("externalId", "string", false, false)}}
	group := map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}, "id": SchemaGroup, "name": "Group", "description": "Group",
		"attributes": []any{attr("displayName", "string", false, true), attr("members", "complex", true, false)}}
	list(w, []any{user, group}, 1)
}

func list(w http.ResponseWriter, resources []any, start int) {
	if resources == nil {
		resources = []any{}
	}
	writeSCIM(w, 200, map[string]any{"schemas": []string{SchemaList}, "totalResults": len(resources), "startIndex": start,
		"itemsPerPage": len(resources), "Resources": resources})
}

func (h *Handler) listGroups(w http.ResponseWriter, _ *http.Request) { list(w, nil, 1) }

// --- users -----------------------------------------------------------------

func (h *Handler) decorate(d Doc, rev uint64) Doc {
	meta, _ := d.get("meta").(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["resourceType"] = "User"
	meta["version"] = fmt.Sprintf(`W/"%d"`, rev)
	meta["location"] = h.cfg.BaseURL + Prefix + "/Users/" + d.str("id")
	d.set("meta", meta)
	return d
}

func (h *Handler) load(ctx context.Context, id string) (Doc, uint64, error) {
	raw, rev, err := h.cfg.Store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, errorf(404, "", "Resource %s not found", id)
	}
	if err != nil {
		return nil, 0, err
	}
	var d Doc
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, 0, fmt.Errorf("stored user %s: %w", id, err)
	}
	return h.decorate(d, rev), rev, nil
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	d, rev, err := h.load(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, rev))
	writeSCIM(w, 200, project(d, r))
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

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	start, count := 1, 100
	if v := q.Get("startIndex"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 1 {
			start = n
		}
	}
	if v := q.Get("count"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			count = min(n, 1000)
		}
	}
	raws, err := h.cfg.Store.List(r.Context())
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
	// A stable order for pagination (Okta's import needs one).
	slices.SortFunc(all, func(a, b Doc) int { return strings.Compare(a.str("id"), b.str("id")) })
	page := []any{}
	for i := start - 1; i < len(all) && len(page) < count; i++ {
		page = append(page, project(h.decorate(all[i], 0), r))
	}
	writeSCIM(w, 200, map[string]any{"schemas": []string{SchemaList}, "totalResults": len(all), "startIndex": start,
		"itemsPerPage": len(page), "Resources": page})
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	d, err := h.readDoc(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := validateUser(d); err != nil {
		h.fail(w, r, err)
		return
	}
	id := uuid.NewString()
	d.set("id", id)
	d.del("password") // never stored
	if d.get("active") == nil {
		d.set("active", true)
	} else {
		d.set("active", d.Active())
	}
	now := h.cfg.Now().UTC().Format(time.RFC3339)
	d.set("meta", map[string]any{"resourceType": "User", "created": now, "lastModified": now})
	d.set("schemas", schemasOf(d))
	raw, _ := json.Marshal(d)
	if err := h.cfg.Store.Create(r.Context(), id, strings.ToLower(d.str("userName")), raw); err != nil {
		if errors.Is(err, ErrConflict) {
			h.fail(w, r, errorf(409, "uniqueness", "userName %s already exists", d.str("userName")))
			return
		}
		h.fail(w, r, err)
		return
	}
	d, rev, err := h.load(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", h.cfg.BaseURL+Prefix+"/Users/"+id)
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, rev))
	writeSCIM(w, 201, d)
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
	h.change(w, r, func(old Doc) (Doc, error) {
		d, err := h.readDoc(r)
		if err != nil {
			return nil, err
		}
		if err := validateUser(d); err != nil {
			return nil, err
		}
		d.set("id", old.str("id"))
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
		d.set("meta", old.get("meta"))
		d.set("schemas", schemasOf(d))
		return d, nil
	}, "PUT")
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	h.change(w, r, func(old Doc) (Doc, error) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, errorf(400, "invalidSyntax", "reading body: %v", err)
		}
		var p patchRequest
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, errorf(400, "invalidSyntax", "body is not a PatchOp: %v", err)
		}
		d := cloneDoc(old)
		if err := applyPatch(d, p.Operations, userAttributes); err != nil {
			return nil, err
		}
		d.set("id", old.str("id"))
		d.del("password")
		return d, validateUser(d)
	}, "PATCH")
}

func cloneDoc(d Doc) Doc {
	raw, _ := json.Marshal(d)
	var c Doc
	_ = json.Unmarshal(raw, &c)
	return c
}

// change is PUT and PATCH: If-Match, the transition's event made durable
// first (its ID from the version it changes, so an IdP retry dedupes),
// then the new state with compare-and-set.
func (h *Handler) change(w http.ResponseWriter, r *http.Request, apply func(Doc) (Doc, error), how string) {
	ctx := r.Context()
	id := r.PathValue("id")
	old, rev, err := h.load(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != fmt.Sprintf(`W/"%d"`, rev) {
		h.fail(w, r, errorf(412, "", "version %s does not match %s", m, fmt.Sprintf(`W/"%d"`, rev)))
		return
	}
	d, err := apply(old)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if kind, ok := transition(old.Active(), d.Active()); ok {
		cause := fmt.Sprintf("scim:%s active=%v", how, d.Active())
		if err := h.publish(ctx, kind, d, rev, cause); err != nil {
			h.fail(w, r, err)
			return
		}
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
	if oldName, newName := strings.ToLower(old.str("userName")), strings.ToLower(d.str("userName")); oldName != newName {
		if err := h.cfg.Store.Rename(ctx, id, oldName, newName); err != nil {
			if errors.Is(err, ErrConflict) {
				h.fail(w, r, errorf(409, "uniqueness", "userName %s already exists", d.str("userName")))
				return
			}
			h.fail(w, r, err)
			return
		}
	}
	if err := h.cfg.Store.Update(ctx, id, raw, rev); err != nil {
		if errors.Is(err, ErrConflict) {
			h.fail(w, r, errorf(412, "", "the user changed meanwhile; retry"))
			return
		}
		h.fail(w, r, err)
		return
	}
	d, rev, err = h.load(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, rev))
	writeSCIM(w, 200, d)
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
	ctx := r.Context()
	id := r.PathValue("id")
	d, rev, err := h.load(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// Deleting an inactive user still revokes: a hard delete is the end.
	if err := h.publish(ctx, events.KindDeprovisioned, d, rev, "scim:DELETE"); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.cfg.Store.Delete(ctx, id, strings.ToLower(d.str("userName"))); err != nil && !errors.Is(err, ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// publish makes the transition durable. Its ID is derived from the user,
// the transition and the version it applies to: a retry of the same
// request (the state unchanged because we failed) yields the same ID.
func (h *Handler) publish(ctx context.Context, kind events.Kind, d Doc, rev uint64, cause string) error {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%s|%d", d.str("id"), kind, cause, rev)))
	ext := d.str("externalId")
	raw, _ := json.Marshal(d)
	ev := events.Event{
		ID: "scim:" + hex.EncodeToString(sum[:16]), Source: events.SourceSCIM, Kind: kind,
		Subject: events.Subject{Issuer: h.cfg.Issuer, ID: ext, Login: d.str("userName"), Email: d.primaryEmail(),
			SCIMID: d.str("id"), ExternalID: ext},
		OccurredAt: h.cfg.Now().UTC(), ReceivedAt: h.cfg.Now().UTC(), Cause: cause, Raw: raw,
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	defer cancel()
	if _, err := h.cfg.Publisher.PublishEvents(pctx, []events.Event{ev}); err != nil {
		return fmt.Errorf("publish scim event: %w", err)
	}
	return nil
}
