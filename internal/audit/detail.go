package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform"
)

// appendFlat writes m as json.Marshal does — keys sorted bytewise, strings
// quoted and HTML-escaped — when every value is a string, an int, an int64,
// a bool, a time.Time or a []string; false for anything else, which Detail
// then hands to encoding/json whole.
func appendFlat(b []byte, m map[string]any) ([]byte, bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonform.AppendString(b, k)
		b = append(b, ':')
		switch v := m[k].(type) {
		case string:
			b = jsonform.AppendString(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case bool:
			b = strconv.AppendBool(b, v)
		case time.Time:
			t, err := v.MarshalJSON()
			if err != nil {
				return nil, false // encoding/json says why
			}
			b = append(b, t...)
		case []string:
			if v == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, '[')
			for j, s := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = jsonform.AppendString(b, s)
			}
			b = append(b, ']')
		default:
			return nil, false
		}
	}
	return append(b, '}'), true
}

// TimeToRevokeMS reads a revocation record's detail time_to_revoke_ms as
// json.Unmarshal into struct{ V *int64 `json:"time_to_revoke_ms"` } does:
// ok when that succeeds and sets V. The details the executor writes (flat
// objects of plain strings, integers, booleans and string lists, sorted
// keys) take a short path; anything else goes to encoding/json — including
// a key that matches only as encoding/json matches names, ignoring case.
func TimeToRevokeMS(detail json.RawMessage) (int64, bool) {
	if v, ok, sure := flatInt(detail, "time_to_revoke_ms"); sure {
		return v, ok
	}
	var d struct {
		V *int64 `json:"time_to_revoke_ms"`
	}
	if json.Unmarshal(detail, &d) != nil || d.V == nil {
		return 0, false
	}
	return *d.V, true
}

// flatInt reads key's integer from a flat object of plain values; sure is
// false where it cannot tell what encoding/json would.
func flatInt(data []byte, key string) (v int64, ok, sure bool) {
	d := jsonform.NewReader(data)
	if !d.Lit("{") {
		return 0, false, false
	}
	if d.Lit("}") {
		return 0, false, d.Done()
	}
	for {
		k, kok := d.Str()
		if !kok || !d.Lit(":") {
			return 0, false, false
		}
		switch {
		case k == key:
			n, nok := d.Int()
			if !nok {
				return 0, false, false
			}
			v, ok = n, true // the last of repeated keys wins, as in encoding/json
		case strings.EqualFold(k, key):
			return 0, false, false
		case !skipPlain(d):
			return 0, false, false
		}
		if d.Lit("}") {
			return v, ok, d.Done()
		}
		if !d.Lit(",") {
			return 0, false, false
		}
	}
}

// skipPlain reads a plain string, an integer, a boolean or a list of plain
// strings.
func skipPlain(d *jsonform.Reader) bool {
	if _, ok := d.Str(); ok {
		return true
	}
	if _, ok := d.Int(); ok {
		return true
	}
	if d.Lit("true") || d.Lit("false") {
		return true
	}
	if !d.Lit("[") {
		return false
	}
	if d.Lit("]") {
		return true
	}
	for {
		if _, ok := d.Str(); !ok {
			return false
		}
		if d.Lit("]") {
			return true
		}
		if !d.Lit(",") {
			return false
		}
	}
}
