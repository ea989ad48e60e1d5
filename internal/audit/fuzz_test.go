package audit

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// Whatever a stranger sends, a bounded refusal is valid UTF-8 JSON of at
// most the documented size.
func FuzzBound(f *testing.F) {
	f.Add("wrong secret", `{"remote":"203.0.113.9","path":"/scim/v2/x"}`)
	f.Add("\xff\xfe", `{"a":[1,2,3,{"b":{"c":{"d":{"e":{"f":"g"}}}}}]}`)
	f.Add("", `not json`)
	f.Fuzz(func(t *testing.T, s, detail string) {
		r := Bound(Record{ID: s, Type: TypeAuthFailed, Error: s, EventID: s, Subject: &Subject{Email: s}, Detail: json.RawMessage(detail)})
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("bounded record does not encode: %v", err)
		}
		for _, v := range []string{r.ID, r.Error, r.EventID, r.Subject.Email} {
			if len(v) > MaxFieldBytes || !utf8.ValidString(v) {
				t.Fatalf("field %q not bounded", v)
			}
		}
		if len(r.Detail) > MaxDetailBytes || (len(r.Detail) > 0 && !json.Valid(r.Detail)) {
			t.Fatalf("detail %q not bounded", r.Detail)
		}
		if len(raw) > 4*MaxFieldBytes+MaxDetailBytes+200 {
			t.Fatalf("bounded record is %d bytes", len(raw))
		}
	})
}
