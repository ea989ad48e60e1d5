package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// checkDetail: Detail writes what json.Marshal writes, or nothing where it
// fails.
func checkDetail(t *testing.T, m map[string]any) {
	t.Helper()
	want, err := json.Marshal(m)
	if err != nil {
		want = nil
	}
	if got := Detail(m); !bytes.Equal(got, want) {
		t.Fatalf("Detail(%#v)\n got %s\nwant %s", m, got, want)
	}
}

// The details the pipeline writes per revocation take the short path.
func TestDetailShortPathTakesThePipelinesDetails(t *testing.T) {
	now := time.Date(2026, 12, 1, 19, 4, 5, 123456789, time.UTC)
	for _, m := range []map[string]any{
		{"exposed_until": now, "time_to_revoke_ms": int64(242), "jti": "5f0c…", "confirmation_expected_by": now.In(time.FixedZone("", 3600))},
		{"exposure": "unknown: the target declares no max_token_lifetime", "time_to_revoke_ms": int64(-1), "email_from": "login"},
		{"targets": []string{"as1", "as2"}, "reason": "no target acts on this event"},
		{"event_type": "user.lifecycle.deactivate", "received_at": now, "ok": true, "n": 3},
		{},
	} {
		if _, ok := appendFlat(nil, m); !ok {
			t.Errorf("%v: not on the short path", m)
		}
		checkDetail(t, m)
	}
}

// Any map of any values: the same bytes as json.Marshal, keys in its order,
// strings escaped as it escapes them, times as MarshalJSON writes them (or
// no detail when that fails), and values of other types through it.
func TestDetailIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pick := func() string {
		if r.IntN(2) == 0 {
			return strange[r.IntN(len(strange))]
		}
		return string(rune('a'+r.IntN(26))) + "_key"
	}
	value := func() any {
		switch r.IntN(12) {
		case 0:
			return pick()
		case 1:
			return r.Int64N(math.MaxInt64) - r.Int64N(math.MaxInt64)
		case 2:
			return []int64{math.MinInt64, math.MaxInt64, 0}[r.IntN(3)]
		case 3:
			return int(r.Int32()) - int(r.Int32())
		case 4:
			return r.IntN(2) == 0
		case 5:
			t := time.Unix(r.Int64N(4e9), r.Int64N(1e9))
			return t.In(time.FixedZone("", (r.IntN(48)-24)*1800))
		case 6:
			return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // MarshalJSON fails
		case 7:
			return []string{pick(), pick()}
		case 8:
			return [][]string{nil, {}}[r.IntN(2)]
		case 9:
			return 1.5 // not on the short path
		case 10:
			return map[string]any{"nested": pick()}
		}
		return nil
	}
	for range 20000 {
		m := map[string]any{}
		for range r.IntN(6) {
			m[pick()] = value()
		}
		checkDetail(t, m)
	}
}

// Any key, string, integer and time: the same bytes as json.Marshal.
func FuzzDetail(f *testing.F) {
	f.Add("jti", "abc", int64(242), int64(1764615845), true)
	f.Add("<&>", "\u2028 \xff", int64(-1), int64(-62135596801), false)
	f.Fuzz(func(t *testing.T, k, s string, n, sec int64, b bool) {
		checkDetail(t, map[string]any{k: s, k + "n": n, k + "t": time.Unix(sec, n%1e9), k + "b": b, k + "l": []string{s, k}})
	})
}

// checkTimeToRevoke: TimeToRevokeMS reads what json.Unmarshal reads.
func checkTimeToRevoke(t *testing.T, detail string) {
	t.Helper()
	var d struct {
		V *int64 `json:"time_to_revoke_ms"`
	}
	want, wantOK := int64(0), json.Unmarshal([]byte(detail), &d) == nil && d.V != nil
	if wantOK {
		want = *d.V
	}
	if got, ok := TimeToRevokeMS(json.RawMessage(detail)); got != want || ok != wantOK {
		t.Fatalf("TimeToRevokeMS(%s) = %d, %v; want %d, %v", detail, got, ok, want, wantOK)
	}
}

// The executor's details are read on the short path; any other detail as
// encoding/json reads it: names matched ignoring case, the last repeat,
// null, fractions, strings, overflow, spaces, other values, not objects.
func TestTimeToRevokeIsEncodingJSON(t *testing.T) {
	exec := `{"exposure":"unknown: the target declares no max_token_lifetime","jti":"da08c020","sub_id_format":"email","time_to_revoke_ms":301}`
	if v, ok, sure := flatInt([]byte(exec), "time_to_revoke_ms"); !sure || !ok || v != 301 {
		t.Fatalf("the executor's detail: %d %v, sure %v", v, ok, sure)
	}
	for _, d := range []string{exec,
		`{"time_to_revoke_ms":0}`, `{"time_to_revoke_ms":-7}`, `{"time_to_revoke_ms":9223372036854775807}`,
		`{"time_to_revoke_ms":9223372036854775808}`, `{"time_to_revoke_ms":1.5}`, `{"time_to_revoke_ms":1e3}`,
		`{"time_to_revoke_ms":"301"}`, `{"time_to_revoke_ms":null}`, `{"time_to_revoke_ms":01}`, `{"time_to_revoke_ms":-0}`,
		`{"Time_To_Revoke_MS":5}`, `{"time_to_revoke_ms":5,"TIME_TO_REVOKE_MS":6}`, `{"TIME_TO_REVOKE_MS":6,"time_to_revoke_ms":5}`,
		`{"time_to_revoke_ms":5,"time_to_revoke_ms":6}`, `{"time_to_revoke_ms":5,"time_to_revoke_ms":"x"}`,
		`{"a":true,"b":false,"c":[],"d":["x","y"],"e":-3,"time_to_revoke_ms":4}`, `{"a":[1],"time_to_revoke_ms":4}`,
		`{"a":{"time_to_revoke_ms":9}}`, `{"a":"\"time_to_revoke_ms\":9"}`, `{"time_to_revoke_ms" : 4}`, `{ "time_to_revoke_ms":4}`,
		`{"time_to_revoke_ms":4} `, `{"time_to_revoke_ms":4}x`, `{"time_to_revoke_ms":4,}`, `{"time_to_revoke_\u006ds":4}`,
		`{"a":truex,"time_to_revoke_ms":4}`, `{}`, `{}x`, `[]`, `null`, ``, `4`, `{"time_to_revoke_ms":4`,
	} {
		checkTimeToRevoke(t, d)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for range 5000 {
		m := map[string]any{"time_to_revoke_ms": r.Int64N(1e6) - 1000}
		for range r.IntN(4) {
			m[strange[r.IntN(len(strange))]] = []any{strange[r.IntN(len(strange))], r.Int64(), r.IntN(2) == 0, []string{"x"}}[r.IntN(4)]
		}
		checkTimeToRevoke(t, string(Detail(m)))
	}
}

// Any bytes: what json.Unmarshal reads.
func FuzzTimeToRevoke(f *testing.F) {
	f.Add(`{"exposure":"unknown","jti":"x","time_to_revoke_ms":301}`)
	f.Add(`{"Time_To_Revoke_Ms":1,"time_to_revoke_ms":2}`)
	f.Fuzz(func(t *testing.T, d string) { checkTimeToRevoke(t, d) })
}
