package scim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func doc(t *testing.T, s string) Doc {
	t.Helper()
	var d Doc
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// PATCH means what RFC 7644 §3.5.2 says for the cases that lost signals or
// data: multi-valued attributes stay lists (add appends once; a single value
// object is one value; a bare string is refused), a sub-attribute of a
// multi-valued attribute applies to each value, a complex attribute keeps
// the sub-attributes not given, and remove by a single value object removes.
func TestPatchSemantics(t *testing.T) {
	user := `{"userName":"u@x","name":{"givenName":"Ann","familyName":"Lee","formatted":"Ann Lee"},
		"emails":[{"value":"u@x","type":"work","primary":true}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales","employeeNumber":"7"}}`
	attrs := map[string]bool{"username": true, "name": true, "emails": true, "active": true, "members": true}
	for _, c := range []struct {
		name, rfc string
		op        patchOp
		check     func(Doc) bool
		status    int
	}{
		{"add one email object appends", "§3.5.2.1", patchOp{Op: "add", Path: "emails", Value: map[string]any{"value": "h@x", "type": "home"}},
			func(d Doc) bool { l, _ := d.get("emails").([]any); return len(l) == 2 }, 0},
		{"add an email that is there adds nothing", "§3.5.2.1", patchOp{Op: "add", Path: "emails", Value: []any{map[string]any{"value": "U@X"}}},
			func(d Doc) bool { l, _ := d.get("emails").([]any); return len(l) == 1 }, 0},
		{"replace emails with a string is refused", "§3.5.2.3", patchOp{Op: "replace", Path: "emails", Value: "z@x"}, nil, 400},
		{"replace emails.value keeps the list", "§3.5.2.3", patchOp{Op: "replace", Path: "emails.value", Value: "n@x"},
			func(d Doc) bool { l, _ := d.get("emails").([]any); return len(l) == 1 && d.primaryEmail() == "n@x" }, 0},
		{"replace name keeps the sub-attributes not given", "§3.5.2.3", patchOp{Op: "replace", Path: "name", Value: map[string]any{"givenName": "Anna"}},
			func(d Doc) bool {
				n, _ := d.get("name").(map[string]any)
				return n["givenName"] == "Anna" && n["familyName"] == "Lee" && n["formatted"] == "Ann Lee"
			}, 0},
		{"add name.middleName keeps the rest", "§3.5.2.1", patchOp{Op: "add", Path: "name", Value: map[string]any{"middleName": "B"}},
			func(d Doc) bool {
				n, _ := d.get("name").(map[string]any)
				return n["middleName"] == "B" && n["familyName"] == "Lee"
			}, 0},
		{"path-less add of the enterprise extension merges", "§3.5.2.1",
			patchOp{Op: "add", Value: map[string]any{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "Ops"}}},
			func(d Doc) bool {
				e, _ := d.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User").(map[string]any)
				return e["department"] == "Ops" && e["employeeNumber"] == "7"
			}, 0},
		{"add without a value is refused", "§3.5.2.1", patchOp{Op: "add", Path: "name"}, nil, 400},
		{"a new primary email takes primary from the old one", "RFC 7643 §2.4", patchOp{Op: "add", Path: "emails", Value: []any{map[string]any{"value": "n@x", "primary": true}}},
			func(d Doc) bool {
				return d.primaryEmail() == "n@x" && strings.Count(mustJSON(d.get("emails")), `"primary":true`) == 1
			}, 0},
		{"primary set through a value filter moves it", "RFC 7643 §2.4", patchOp{Op: "add", Path: "emails", Value: []any{map[string]any{"value": "h@x", "type": "home"}}},
			func(d Doc) bool {
				err := applyPatch(d, []patchOp{{Op: "replace", Path: `emails[type eq "home"].primary`, Value: true}}, map[string]bool{"username": true, "emails": true})
				return err == nil && d.primaryEmail() == "h@x" && strings.Count(mustJSON(d.get("emails")), `"primary":true`) == 1
			}, 0},
		{"removing the required userName is refused", "RFC 7643 §4.1.1, §3.5.2", patchOp{Op: "remove", Path: "userName"}, nil, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := doc(t, user)
			err := applyPatch(d, []patchOp{c.op}, attrs)
			if c.status != 0 {
				var se *scimError
				if err == nil || !errorAs(err, &se) || se.status != c.status {
					t.Fatalf("%s: want %d, got %v", c.rfc, c.status, err)
				}
				return
			}
			if err != nil || !c.check(d) {
				b, _ := json.Marshal(d)
				t.Errorf("%s: %v → %s", c.rfc, err, b)
			}
		})
	}
}

func errorAs(err error, se **scimError) bool {
	e, ok := err.(*scimError)
	*se = e
	return ok
}

// Removing a member with one value object (not a list) removes it, and the
// removal is an access_removed event; a value we cannot read is a 400.
func TestRemoveMemberByValueObject(t *testing.T) {
	h, uid := fuzzHandler(t)
	code, body := fuzzDo(h, "POST", Prefix+"/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"mcp-users","members":[{"value":"`+uid+`"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create group: %d %s", code, body)
	}
	var g struct{ ID string }
	_ = json.Unmarshal([]byte(body), &g)
	pub := h.cfg.Publisher.(*flaky)
	before := len(pub.ids)
	code, body = fuzzDo(h, "PATCH", Prefix+"/Groups/"+g.ID, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members","value":{"value":"`+uid+`"}}]}`)
	if code >= 300 {
		t.Fatalf("remove member: %d %s", code, body)
	}
	if _, after := fuzzDo(h, "GET", Prefix+"/Groups/"+g.ID, ""); strings.Contains(after, uid) {
		t.Errorf("the member is still there: %s", after)
	}
	if len(pub.ids) != before+1 {
		t.Errorf("%d events published for the removal, want 1 access_removed", len(pub.ids)-before)
	}
	if code, _ := fuzzDo(h, "PATCH", Prefix+"/Groups/"+g.ID, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members","value":"`+uid+`"}]}`); code != http.StatusBadRequest {
		t.Errorf("remove with a bare string value: %d, want 400", code)
	}
}

// Filters evaluate as RFC 7644 §3.4.2.2 says: every operator, precedence of
// not > and > or, grouping, value paths, sub-attributes, URN-qualified
// names, booleans in value paths, caseExact ids.
func TestFilterEvaluation(t *testing.T) {
	u := doc(t, `{"id":"2819c223","externalId":"00uAbC","userName":"Bjensen@Example.com","title":"Tour Guide","active":true,
		"name":{"familyName":"Jensen","givenName":"Barbara"},
		"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@jensen.org","type":"home"}],
		"meta":{"lastModified":"2011-05-13T04:42:34Z"},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Tour Operations","manager":{"value":"26118915"}}}`)
	for f, want := range map[string]bool{
		`userName eq "bjensen@example.com"`:                                true, // caseExact false
		`id eq "2819C223"`:                                                 false,
		`externalId eq "00uAbC"`:                                           true,
		`userName ne "x"`:                                                  true,
		`name.familyName co "ens"`:                                         true,
		`userName sw "Bjen"`:                                               true,
		`userName ew "example.com"`:                                        true,
		`title pr`:                                                         true,
		`nickName pr`:                                                      false,
		`meta.lastModified gt "2011-05-13T04:42:34Z"`:                      false,
		`meta.lastModified ge "2011-05-13T04:42:34Z"`:                      true,
		`meta.lastModified lt "2012-01-01T00:00:00Z"`:                      true,
		`emails co "jensen.org"`:                                           true,
		`emails[type eq "work" and value co "@example.com"]`:               true,
		`emails[type eq "home" and value co "@example.com"]`:               false,
		`emails[primary eq true]`:                                          true,
		`active eq true`:                                                   true,
		`not (active eq true)`:                                             false,
		`title pr and userName sw "x" or active eq true`:                   true,
		`title pr and (userName sw "x" or active eq false)`:                false,
		`urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bjensen"`: true,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations"`: true,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915"`:     true,
		`nickName eq null`: true,
	} {
		p, err := parseFilter(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if got := p.match(u); got != want {
			t.Errorf("%s: %v, want %v", f, got, want)
		}
	}
}

// URN-qualified paths (RFC 7644 §3.10, the forms Entra sends), read-only
// attributes (§3.5.2: 400 mutability), and the atomicity of a request.
func TestPatchQualifiedPathsAndMutability(t *testing.T) {
	const ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	user := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u1","userName":"u@x","displayName":"U",
		"meta":{"created":"2026-01-01T00:00:00Z"},"groups":[{"value":"g1"}],
		"` + ent + `":{"department":"Sales","manager":{"value":"m1","displayName":"Boss"}}}`
	extOf := func(d Doc) map[string]any { e, _ := d.get(ent).(map[string]any); return e }
	for _, c := range []struct {
		name, rfc string
		ops       []patchOp
		check     func(Doc) bool
		status    int
		scimType  string
	}{
		{"core URN path is the core attribute", "§3.10", []patchOp{{Op: "replace", Path: "urn:ietf:params:scim:schemas:core:2.0:User:displayName", Value: "V"}},
			func(d Doc) bool {
				return d.str("displayName") == "V" && d.get("urn:ietf:params:scim:schemas:core:2.0:User:displayName") == nil
			}, 0, ""},
		{"enterprise URN attribute lives in the extension", "§3.10", []patchOp{{Op: "replace", Path: ent + ":department", Value: "Ops"}},
			func(d Doc) bool { return extOf(d)["department"] == "Ops" && d.get(ent+":department") == nil }, 0, ""},
		{"enterprise URN sub-attribute", "§3.10", []patchOp{{Op: "replace", Path: ent + ":manager.value", Value: "m2"}},
			func(d Doc) bool {
				m, _ := extOf(d)["manager"].(map[string]any)
				return m["value"] == "m2" && m["displayName"] == "Boss"
			}, 0, ""},
		{"remove an enterprise URN attribute removes it", "§3.5.2.2", []patchOp{{Op: "remove", Path: ent + ":manager"}},
			func(d Doc) bool { _, has := extOf(d)["manager"]; return !has && extOf(d)["department"] == "Sales" }, 0, ""},
		{"path-less replace with URN-qualified keys (Entra)", "§3.5.2.3", []patchOp{{Op: "Replace", Value: map[string]any{ent + ":department": "R&D", "displayName": "W"}}},
			func(d Doc) bool { return extOf(d)["department"] == "R&D" && d.str("displayName") == "W" }, 0, ""},
		{"an extension attribute added lists the extension in schemas", "RFC 7643 §3", []patchOp{{Op: "add", Path: ent + ":employeeNumber", Value: "9"}},
			func(d Doc) bool { return strings.Contains(mustJSON(d.get("schemas")), ent) }, 0, ""},
		{"an unknown enterprise attribute is refused", "§3.5.2", []patchOp{{Op: "add", Path: ent + ":shoeSize", Value: "9"}}, nil, 400, "invalidPath"},
		{"id is read-only", "§3.5.2", []patchOp{{Op: "replace", Path: "id", Value: "u2"}}, nil, 400, "mutability"},
		{"meta.created is read-only", "§3.5.2", []patchOp{{Op: "replace", Path: "meta.created", Value: "2020-01-01T00:00:00Z"}}, nil, 400, "mutability"},
		{"a user's groups are read-only", "RFC 7643 §4.1.2", []patchOp{{Op: "add", Path: "groups", Value: []any{map[string]any{"value": "g2"}}}}, nil, 400, "mutability"},
		{"core-URN-qualified id is read-only too", "§3.5.2", []patchOp{{Op: "replace", Path: "urn:ietf:params:scim:schemas:core:2.0:User:id", Value: "u2"}}, nil, 400, "mutability"},
		{"schemas is read-only", "§3.5.2", []patchOp{{Op: "replace", Path: "schemas", Value: []any{"x"}}}, nil, 400, "mutability"},
		{"path-less: read-only sent back unchanged is no change", "§3.5.2", []patchOp{{Op: "replace", Value: map[string]any{"id": "u1", "displayName": "Z"}}},
			func(d Doc) bool { return d.str("id") == "u1" && d.str("displayName") == "Z" }, 0, ""},
		{"path-less: read-only changed is refused", "§3.5.2", []patchOp{{Op: "replace", Value: map[string]any{"id": "u9"}}}, nil, 400, "mutability"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := doc(t, user)
			err := applyPatch(d, c.ops, userAttributes)
			if c.status != 0 {
				var se *scimError
				if err == nil || !errorAs(err, &se) || se.status != c.status || se.scimType != c.scimType {
					t.Fatalf("%s: want %d %s, got %v", c.rfc, c.status, c.scimType, err)
				}
				return
			}
			if err != nil || !c.check(d) {
				t.Errorf("%s: %v → %s", c.rfc, err, mustJSON(d))
			}
		})
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// All operations of a request or none (§3.5.2: "If an error occurs, the
// resource SHALL NOT be modified"); paging treats a negative count as 0
// (§3.4.2.4); a listed resource carries the version a GET gives, so
// If-Match with it succeeds.
func TestPatchAtomicAndListVersions(t *testing.T) {
	h, id := fuzzHandler(t)
	code, body := fuzzDo(h, "PATCH", Prefix+"/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"replace","path":"displayName","value":"Changed"},{"op":"replace","path":"id","value":"other"}]}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "mutability") {
		t.Fatalf("second op read-only: %d %s", code, body)
	}
	if _, got := fuzzDo(h, "GET", Prefix+"/Users/"+id, ""); strings.Contains(got, "Changed") {
		t.Errorf("the first operation of a refused request was kept: %s", got)
	}
	code, body = fuzzDo(h, "GET", Prefix+"/Users?count=-1", "")
	if code != 200 || !strings.Contains(body, `"itemsPerPage":0`) || !strings.Contains(body, `"totalResults":1`) {
		t.Errorf("count=-1: %d %s", code, body)
	}
	_, body = fuzzDo(h, "GET", Prefix+"/Users", "")
	var list struct {
		Resources []struct {
			Meta struct{ Version string } `json:"meta"`
		}
	}
	_ = json.Unmarshal([]byte(body), &list)
	if len(list.Resources) != 1 || list.Resources[0].Meta.Version == `W/"0"` {
		t.Fatalf("listed version: %s", body)
	}
	req := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Jane D"}]}`
	if code, body := fuzzDoIfMatch(h, "PATCH", Prefix+"/Users/"+id, req, list.Resources[0].Meta.Version); code != 200 {
		t.Errorf("If-Match with the listed version: %d %s", code, body)
	}
}
