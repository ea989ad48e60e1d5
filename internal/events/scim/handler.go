package scim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
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
	Groups         Store // groups
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
	if cfg.Store == nil || cfg.Groups == nil || cfg.Publisher == nil || cfg.Recorder == nil || cfg.Now == nil || cfg.Log == nil || cfg.MaxBody <= 0 || cfg.PublishTimeout <= 0 {
		return nil, errors.New("scim: stores, publisher, recorder, clock, logger, body limit and publish timeout are required")
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET "+Prefix+"/ServiceProviderConfig", h.serviceProviderConfig)
	h.mux.HandleFunc("GET "+Prefix+"/ResourceTypes", h.resourceTypes)
	h.mux.HandleFunc("GET "+Prefix+"/Schemas", h.schemas)
	h.mux.HandleFunc("GET "+Prefix+"/Users", h.listUsers)
	h.mux.HandleFunc("POST "+Prefix+"/Users", h.createUser)
	h.mux.HandleFunc("GET "+Prefix+"/Users/{id}", h.getUser)
	h.mux.HandleFunc("PUT "+Prefix+"/Users/{id}", h.replaceUser)
	h.mux.HandleFunc("PATCH "+Prefix+"/Users/{id}", h.patchUser)
	h.mux.HandleFunc("DELETE "+Prefix+"/Users/{id}", h.deleteUser)
	h.mux.HandleFunc("GET "+Prefix+"/Groups", h.listGroups)
	h.mux.HandleFunc("POST "+Prefix+"/Groups", h.createGroup)
	h.mux.HandleFunc("GET "+Prefix+"/Groups/{id}", h.getGroup)
	h.mux.HandleFunc("PUT "+Prefix+"/Groups/{id}", h.replaceGroup)
	h.mux.HandleFunc("PATCH "+Prefix+"/Groups/{id}", h.patchGroup)
	h.mux.HandleFunc("DELETE "+Prefix+"/Groups/{id}", h.deleteGroup)
	h.mux.HandleFunc("POST "+Prefix+"/Bulk", func(w http.ResponseWriter, r *http.Request) {
		// RFC 7644 §3.7 and §3.12: not offered (ServiceProviderConfig says so).
		h.fail(w, r, errorf(501, "", "bulk operations are not supported; send each operation on its own"))
	})
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
			Detail: audit.Detail(map[string]any{"method": r.Method, "path": r.URL.Path, "remote": events.RemoteHost(r)})})
		w.Header().Set("WWW-Authenticate", `Bearer realm="lifecycle-worker-scim"`)
		writeSCIM(w, 401, errorBody(errorf(401, "", "authentication required")))
		return
	}
	events.Authenticated(r.Context())
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
			Error: strings.TrimSpace(e.scimType + " " + e.detail), Detail: audit.Detail(map[string]any{"method": r.Method, "path": r.URL.Path, "remote": events.RemoteHost(r)})})
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
