package scim

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

func newMemStore() *MemoryStore { return NewMemoryStore() }

// flaky is a broker that refuses the first publish, and dedupes by ID.
type flaky struct {
	failNext bool
	ids      []string
	evs      []events.Event
	stored   map[string]bool
}

func (f *flaky) PublishEvents(_ context.Context, evs []events.Event) ([]events.Publication, error) {
	for _, e := range evs {
		f.ids = append(f.ids, e.ID)
		f.evs = append(f.evs, e)
	}
	if f.failNext {
		f.failNext = false
		return nil, errors.New("broker away")
	}
	var pubs []events.Publication
	for _, e := range evs {
		pubs = append(pubs, events.Publication{Duplicate: f.stored[e.ID]})
		f.stored[e.ID] = true
	}
	return pubs, nil
}

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, ...audit.Record) error { return nil }

// When the event cannot be made durable the IdP gets 503 and nothing
// changes; its retry yields exactly one event, with the same ID.
func TestPublishFailureThenRetry(t *testing.T) {
	pub := &flaky{stored: map[string]bool{}}
	h, err := New(Config{Tokens: []string{"tok-0123456789abcdef"}, BaseURL: "https://lw.example", MaxBody: 1 << 20, PublishTimeout: time.Second,
		Store: newMemStore(), Groups: newMemStore(), Publisher: pub, Recorder: nopRecorder{}, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (int, map[string]any) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-0123456789abcdef")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	code, u := do("POST", Prefix+"/Users", `{"userName":"jane@corp.example","externalId":"00ujane","active":true}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, u)
	}
	id := u["id"].(string)
	deactivate := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`
	pub.failNext = true
	if code, _ := do("PATCH", Prefix+"/Users/"+id, deactivate); code != http.StatusServiceUnavailable {
		t.Fatalf("with the broker away: %d, want 503", code)
	}
	if _, u := do("GET", Prefix+"/Users/"+id, ""); u["active"] != true {
		t.Fatal("a failed deactivation changed the user")
	}
	if code, _ := do("PATCH", Prefix+"/Users/"+id, deactivate); code != http.StatusOK {
		t.Fatalf("retry: %d", code)
	}
	if len(pub.ids) != 2 || pub.ids[0] != pub.ids[1] || len(pub.stored) != 1 {
		t.Errorf("publishes %v: want the same event ID twice and one event stored", pub.ids)
	}
	// The IdP repeats the request once more: no transition, no event.
	if code, _ := do("PATCH", Prefix+"/Users/"+id, deactivate); code != http.StatusOK || len(pub.ids) != 2 {
		t.Errorf("a repeated deactivation published again: %v", pub.ids)
	}
}

func TestFilterParsing(t *testing.T) {
	for in, ok := range map[string]bool{
		`userName eq "a@b.c"`:                          true,
		`userName Eq "a@b.c" and externalId eq "00u1"`: true,
		`emails.value eq "x@y.z"`:                      true,
		`userName sw "a"`:                              true,
		`userName eq "a" or userName eq "b"`:           true,
		`not (active eq true)`:                         true,
		`emails[type eq "work" and value co "@x"]`:     true,
		`meta.lastModified gt "2011-05-13T04:42:34Z"`:  true,
		`title pr`:                  true,
		`userName eq "unterminated`: false,
		`userName eq alice@x`:       false,
		`userName eq`:               false,
		`(userName eq "a"`:          false,
		`userName xx "a"`:           false,
		`userName eq "a" and`:       false,
	} {
		if _, err := parseFilter(in); (err == nil) != ok {
			t.Errorf("parseFilter(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

type keepRecorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (k *keepRecorder) Record(_ context.Context, recs ...audit.Record) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.recs = append(k.recs, recs...)
	return nil
}

// Every SCIM refusal names where it came from.
func TestRefusalsNameTheRemote(t *testing.T) {
	rec := &keepRecorder{}
	h, err := New(Config{Tokens: []string{"tok-0123456789abcdef"}, BaseURL: "https://lw.example", MaxBody: 1 << 20, PublishTimeout: time.Second,
		Store: newMemStore(), Groups: newMemStore(), Publisher: &flaky{stored: map[string]bool{}}, Recorder: rec, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"wrong", "tok-0123456789abcdef"} {
		req := httptest.NewRequest("GET", Prefix+"/Users?filter=nope", nil)
		req.RemoteAddr = "203.0.113.9:4711"
		req.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if len(rec.recs) != 2 {
		t.Fatalf("%d records, want the auth failure and the rejected filter", len(rec.recs))
	}
	for _, r := range rec.recs {
		var d struct {
			Remote string `json:"remote"`
		}
		if json.Unmarshal(r.Detail, &d); d.Remote != "203.0.113.9" {
			t.Errorf("%s record has remote %q", r.Type, d.Remote)
		}
	}
}

// ServiceProviderConfig says what the service does: every claim is held
// against the behaviour (RFC 7643 §5).
func TestServiceProviderConfigTellsTheTruth(t *testing.T) {
	h, id := fuzzHandler(t)
	_, body := fuzzDo(h, "GET", Prefix+"/ServiceProviderConfig", "")
	type feature struct {
		Supported  bool `json:"supported"`
		MaxResults int  `json:"maxResults"`
	}
	var doc struct {
		Patch, Bulk, Filter, ChangePassword, Sort, Etag feature
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	spc := map[string]feature{"patch": doc.Patch, "bulk": doc.Bulk, "filter": doc.Filter, "changePassword": doc.ChangePassword, "sort": doc.Sort, "etag": doc.Etag}
	// filter: the whole grammar, and at most maxResults a page.
	if code, got := fuzzDo(h, "GET", Prefix+"/Users?filter="+url.QueryEscape(`(userName sw "jane" or title pr) and not (active eq false)`), ""); !spc["filter"].Supported ||
		code != 200 || !strings.Contains(got, id) {
		t.Errorf("filter claimed %v: %d %s", spc["filter"].Supported, code, got)
	}
	if _, got := fuzzDo(h, "GET", Prefix+"/Users?count=100000", ""); spc["filter"].MaxResults != 1000 || !strings.Contains(got, `"itemsPerPage":1`) {
		t.Errorf("maxResults %d: %s", spc["filter"].MaxResults, got)
	}
	// etag: GET gives the version; a stale If-Match is 412.
	if !spc["etag"].Supported {
		t.Error("etag is supported")
	}
	req := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"x"}]}`
	if code, got := fuzzDoIfMatch(h, "PATCH", Prefix+"/Users/"+id, req, `W/"999"`); code != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: %d %s", code, got)
	}
	// Not offered: bulk (its endpoint answers 501), sort, changePassword.
	if spc["bulk"].Supported || spc["sort"].Supported || spc["changePassword"].Supported {
		t.Errorf("claims what is not there: %s", body)
	}
	if code, got := fuzzDo(h, "POST", Prefix+"/Bulk", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[]}`); code != http.StatusNotImplemented {
		t.Errorf("bulk: %d %s", code, got)
	}
	if !spc["patch"].Supported {
		t.Error("patch is supported")
	}
}

// An email changed by PATCH is the one later events carry: targets keyed
// by email revoke the right person. Every access change is published
// before the answer (the publisher saw it when the PATCH returned).
func TestChangedEmailReachesLaterEvents(t *testing.T) {
	h, id := fuzzHandler(t)
	pub := h.cfg.Publisher.(*flaky)
	code, body := fuzzDo(h, "PATCH", Prefix+"/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"replace","path":"emails[type eq \"work\"].value","value":"jane.new@corp.example"}]}`)
	if code != 200 {
		t.Fatalf("email change: %d %s", code, body)
	}
	before := len(pub.evs)
	code, body = fuzzDo(h, "PATCH", Prefix+"/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if code != 200 || len(pub.evs) != before+1 {
		t.Fatalf("deactivation: %d %s, %d events", code, body, len(pub.evs)-before)
	}
	ev := pub.evs[len(pub.evs)-1]
	if ev.Kind != events.KindDeprovisioned && ev.Kind != events.KindSuspended {
		t.Errorf("kind %s", ev.Kind)
	}
	if ev.Subject.Email != "jane.new@corp.example" {
		t.Errorf("the deactivation names %q, want the changed email", ev.Subject.Email)
	}
}

// laggingStore is a cluster replica behind the leader: it takes writes
// but its reads do not see them yet.
type laggingStore struct{ *MemoryStore }

func (laggingStore) Get(context.Context, string) ([]byte, uint64, error) { return nil, 0, ErrNotFound }

// A create answers from what it stored and the revision the store gave,
// not from a read (which a lagging replica answers "not found": a 404 to
// a POST that did store the user, seen on the compose cluster).
func TestCreateAnswersWithoutReadingBack(t *testing.T) {
	h, err := New(Config{Tokens: []string{fuzzToken}, BaseURL: "https://lw.example", MaxBody: 1 << 20, PublishTimeout: time.Second,
		Store: laggingStore{NewMemoryStore()}, Groups: laggingStore{NewMemoryStore()}, Publisher: &flaky{stored: map[string]bool{}},
		Recorder: nopRecorder{}, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	code, body := fuzzDo(h, "POST", Prefix+"/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"lag@corp.example","active":true}`)
	if code != http.StatusCreated || !strings.Contains(body, `"userName":"lag@corp.example"`) || !strings.Contains(body, `"version":"W/\"1\""`) {
		t.Errorf("create on a lagging store: %d %s", code, body)
	}
}
