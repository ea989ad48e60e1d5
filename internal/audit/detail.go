package audit

import (
	"slices"
	"strconv"
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
