package scim

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const fuzzToken = "tok-0123456789abcdef"

func fuzzHandler(t *testing.T) (*Handler, string) {
	t.Helper()
	h, err := New(Config{Tokens: []string{fuzzToken}, BaseURL: "https://lw.example", MaxBody: 1 << 20, PublishTimeout: time.Second,
		Store: newMemStore(), Groups: newMemStore(), Publisher: &flaky{stored: map[string]bool{}}, Recorder: nopRecorder{}, Now: time.Now,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	code, body := fuzzDo(h, "POST", Prefix+"/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jane@corp.example",
		"externalId":"00ujane","active":true,"name":{"givenName":"Jane","familyName":"Doe"},"emails":[{"value":"jane@corp.example","type":"work","primary":true}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var u struct{ ID string }
	_ = json.Unmarshal([]byte(body), &u)
	return h, u.ID
}

func fuzzDo(h http.Handler, method, target, body string) (int, string) {
	req := httptest.NewRequest(method, "/", strings.NewReader(body))
	req.URL, _ = url.Parse(target)
	req.RequestURI = target
	req.Header.Set("Authorization", "Bearer "+fuzzToken)
	req.Header.Set("Content-Type", "application/scim+json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// answered checks an answer: never a server error (the broker is up), and
// every error in RFC 7644's form.
func answered(t *testing.T, what string, code int, body string) {
	t.Helper()
	if code >= 500 {
		t.Fatalf("%s: %d %s", what, code, body)
	}
	if code >= 400 && !strings.Contains(body, "urn:ietf:params:scim:api:messages:2.0:Error") {
		t.Fatalf("%s: %d without a SCIM error body: %s", what, code, body)
	}
}

// Any filter: parsed or refused with 400, never a crash.
func FuzzSCIMFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a@b.c"`, `userName Eq "a@b.c" and externalId eq "00u1"`, `emails.value eq "x@y.z"`,
		`emails[type eq "work" and value co "@x"]`, `meta.lastModified gt "2011-05-13T04:42:34Z"`, `userName eq "\"`, `(`, `not (active eq true)`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		h, _ := fuzzHandler(t)
		if flt, err := parseFilter(filter); err == nil {
			flt.match(Doc{"userName": "jane@corp.example", "emails": []any{map[string]any{"value": "x"}}})
		}
		code, body := fuzzDo(h, "GET", Prefix+"/Users?filter="+url.QueryEscape(filter), "")
		answered(t, "filter "+filter, code, body)
	})
}

// Any PATCH body: applied or refused in RFC 7644's form; a user stays a
// user (id and userName kept).
func FuzzSCIMPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"b@x"}]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"emails[type eq \"work\"]"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value","value":"m"}]}`,
		`{"Operations":[{"op":"remove","path":"name.givenName"}]}`, `{"Operations":null}`, `[]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h, id := fuzzHandler(t)
		code, resp := fuzzDo(h, "PATCH", Prefix+"/Users/"+id, body)
		answered(t, "patch", code, resp)
		code, resp = fuzzDo(h, "GET", Prefix+"/Users/"+id, "")
		if code != http.StatusOK || !strings.Contains(resp, `"id":"`+id+`"`) {
			t.Fatalf("after the patch the user reads %d %s", code, resp)
		}
	})
}

// Any user resource: created, replaced or refused in RFC 7644's form.
func FuzzSCIMResource(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bo@corp.example","active":true}`,
		`{"userName":"","emails":"x"}`, `{"userName":"c@x","name":{"givenName":1},"active":"TRUE"}`, `null`, `{"userName":["a"]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h, id := fuzzHandler(t)
		code, resp := fuzzDo(h, "POST", Prefix+"/Users", body)
		answered(t, "create", code, resp)
		code, resp = fuzzDo(h, "PUT", Prefix+"/Users/"+id, body)
		answered(t, "replace", code, resp)
	})
}

func fuzzDoIfMatch(h http.Handler, method, target, body, version string) (int, string) {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fuzzToken)
	req.Header.Set("Content-Type", "application/scim+json")
	req.Header.Set("If-Match", version)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}
