package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"
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

// Whatever a message says it carries, the index reads it as the records it
// carries or as one record: a group's parts join back into its body and
// hold no newline. And records the worker encodes always come apart again,
// whatever their strings and details hold.
func FuzzGroup(f *testing.F) {
	f.Add([]byte("a\nb"), "2", "x\ny", `{"k" : "v\n"}`)
	f.Add([]byte("\n\n"), "3", "\u2028\r\n", "{\n}")
	f.Add([]byte("{}"), "01", "", `[1,2]`)
	f.Fuzz(func(t *testing.T, data []byte, header, s, detail string) {
		if parts, err := SplitGroup(data, []string{header}); err == nil {
			if n, _ := strconv.Atoi(header); len(parts) != n || !bytes.Equal(JoinGroup(parts), data) {
				t.Fatalf("%q as %q: %d parts that join to %q", data, header, len(parts), JoinGroup(parts))
			}
			for _, p := range parts {
				if bytes.IndexByte(p, '\n') >= 0 {
					t.Fatalf("a part with a newline: %q", p)
				}
			}
		}
		recs := []Record{
			{ID: s, Time: time.Unix(1700000000, 0).UTC(), Type: TypeAuthFailed, Error: s, Detail: json.RawMessage(detail)},
			{ID: "b", Time: time.Unix(1700000000, 0).UTC(), Type: TypeEventRejected, Subject: &Subject{Login: s}},
		}
		var bodies [][]byte
		for _, r := range recs {
			b, err := Encode(r)
			if err != nil {
				return // a detail that is not JSON: not a record
			}
			bodies = append(bodies, b)
		}
		parts, err := SplitGroup(JoinGroup(bodies), []string{"2"})
		if err != nil || !bytes.Equal(parts[0], bodies[0]) || !bytes.Equal(parts[1], bodies[1]) {
			t.Fatalf("records %q did not come apart: %q, %v", bodies, parts, err)
		}
	})
}
