package audit

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform/jsonformtest"
)

// The codec knows Record's fields by name and order. A field added to
// Record must be taught to Encode and decodeShort (and to this list), or
// records would be encoded without it.
func TestCodecKnowsEveryRecordField(t *testing.T) {
	want := []string{"id", "seq,omitempty", "time", "type", "event_id,omitempty", "source,omitempty", "kind,omitempty",
		"subject,omitempty", "target,omitempty", "driver,omitempty", "attempt,omitempty", "outcome,omitempty",
		"http_status,omitempty", "latency_ms,omitempty", "error,omitempty", "occurred_at,omitempty", "detail,omitempty"}
	var have []string
	for f := range reflect.TypeFor[Record]().Fields() {
		have = append(have, f.Tag.Get("json"))
	}
	wantSub := []string{"issuer,omitempty", "id,omitempty", "login,omitempty", "email,omitempty"}
	var haveSub []string
	for f := range reflect.TypeFor[Subject]().Fields() {
		haveSub = append(haveSub, f.Tag.Get("json"))
	}
	if !reflect.DeepEqual(have, want) || !reflect.DeepEqual(haveSub, wantSub) {
		t.Fatalf("Record's fields changed:\n%q\n%q\nteach recordjson.go the new ones", have, haveSub)
	}
}

// strange are strings that take encoding/json's own path on the way out
// and the long path on the way in.
var strange = []string{"", "a", `quote " inside`, `back\slash`, "<script>&amp;", "a<b", "a>b", "a&b", "line\nbreak\ttab\r\b\f", "\x00\x1f\x7f",
	"José Müller", "日本", "\u2028\u2029", "bad \xff utf8", "\xc3", "emoji 😀", "/slash/", "'single'"}

func randomRecord(r *rand.Rand) Record {
	pick := func() string {
		if r.IntN(3) == 0 {
			return strange[r.IntN(len(strange))]
		}
		return fmt.Sprintf("okta:bench-%07d|as%d", r.IntN(1e7), r.IntN(10))
	}
	num := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return -r.Int64N(1000)
		default:
			return r.Int64N(1 << 40)
		}
	}
	tm := func() time.Time {
		t := time.Unix(r.Int64N(4e9), r.Int64N(1e9))
		switch r.IntN(4) {
		case 0:
			return t.UTC()
		case 1:
			return t.In(time.FixedZone("", -5*3600))
		case 2:
			return t.Truncate(time.Second).UTC()
		}
		return t.In(time.FixedZone("X", 5*3600+1800))
	}
	rec := Record{ID: pick(), Time: tm(), Type: Type(pick())}
	if r.IntN(2) == 0 {
		rec.Seq = uint64(r.Int64N(1 << 50))
	}
	for _, f := range []*string{&rec.EventID, &rec.Source, &rec.Kind, &rec.Target, &rec.Driver, &rec.Outcome, &rec.Error} {
		if r.IntN(3) > 0 {
			*f = pick()
		}
	}
	if r.IntN(4) > 0 {
		rec.Subject = &Subject{}
		for _, f := range []*string{&rec.Subject.Issuer, &rec.Subject.ID, &rec.Subject.Login, &rec.Subject.Email} {
			if r.IntN(3) > 0 {
				*f = pick()
			}
		}
	}
	rec.Attempt, rec.HTTPStatus, rec.LatencyMS = int(num()), int(num()), num()
	if r.IntN(2) == 0 {
		t := tm()
		rec.OccurredAt = &t
	}
	switch r.IntN(5) {
	case 0:
	case 1:
		rec.Detail = json.RawMessage(`{ "spaced" : [1, 2 ,3], "html": "<b>&</b>" }`)
	case 2:
		rec.Detail = json.RawMessage(`{}`)
	default:
		d, _ := json.Marshal(map[string]any{"exposure": pick(), "jti": pick(), "time_to_revoke_ms": num()})
		rec.Detail = d
	}
	return rec
}

// Encode writes what json.Marshal writes, byte for byte, and Decode reads
// it back as json.Unmarshal does.
func TestEncodeAndDecodeAreEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		rec := randomRecord(r)
		checkEncode(t, rec)
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		checkDecode(t, b)
	}
}

func TestEncodeFailsAsEncodingJSON(t *testing.T) {
	late := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, rec := range []Record{
		{ID: "a", Type: "t", Time: late},
		{ID: "a", Type: "t", OccurredAt: &late},
		{ID: "a", Type: "t", Detail: json.RawMessage(`{"open":`)},
		{ID: "a", Type: "t", Detail: json.RawMessage(`{} {}`)},
	} {
		checkEncode(t, rec)
	}
}

func checkEncode(t *testing.T, rec Record) { t.Helper(); jsonformtest.Encodes(t, rec, Encode) }

func checkDecode(t *testing.T, data []byte) { t.Helper(); jsonformtest.Decodes(t, data, Decode) }

// Bodies that are not Encode's form: each must decode (or fail) as
// json.Unmarshal does, whichever path it takes.
func TestDecodeOtherFormsAsEncodingJSON(t *testing.T) {
	base := `{"id":"x|as1/succeeded","seq":7,"time":"2026-12-01T14:23:00.818600572Z","type":"revocation.succeeded","event_id":"x","source":"okta-hook","kind":"deprovisioned","subject":{"issuer":"https://acme.okta.com","id":"00u1","login":"a@example.com","email":"a@example.com"},"target":"as1","driver":"gtr","attempt":1,"outcome":"succeeded","http_status":204,"latency_ms":5,"error":"e","occurred_at":"2026-11-26T09:00:00Z","detail":{"a":1}}`
	bodies := []string{base,
		strings.Replace(base, `"id":"x|`, `"ID":"x|`, 1),
		strings.Replace(base, `"seq":7`, `"seq":-7`, 1),
		strings.Replace(base, `"seq":7`, `"seq":18446744073709551615`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":1.0`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":01`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":-0`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":1e2`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":99999999999999999999`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":"1"`, 1),
		strings.Replace(base, `"attempt":1`, `"attempt":null`, 1),
		strings.Replace(base, `"latency_ms":5`, `"latency_ms":-`, 1),
		strings.Replace(base, `"target":"as1"`, `"target":"a\u0073\n1"`, 1),
		strings.Replace(base, `"target":"as1"`, "\"target\":\"a\xffs\"", 1),
		strings.Replace(base, `"target":"as1"`, "\"target\":\"a\x01s\"", 1),
		strings.Replace(base, `"target":"as1"`, `"target": "as1"`, 1),
		strings.Replace(base, `"target":"as1"`, `"target":null`, 1),
		strings.Replace(base, `"subject":{"issuer":"https://acme.okta.com",`, `"subject":{`, 1),
		strings.Replace(base, `"subject":{"issuer":"https://acme.okta.com","id":"00u1","login":"a@example.com","email":"a@example.com"}`, `"subject":{}`, 1),
		strings.Replace(base, `"subject":{"issuer":"https://acme.okta.com","id":"00u1","login":"a@example.com","email":"a@example.com"}`, `"subject":null`, 1),
		strings.Replace(base, `"subject":{"issuer":"https://acme.okta.com","id":"00u1"`, `"subject":{"id":"00u1","issuer":"https://acme.okta.com"`, 1),
		strings.Replace(base, `"subject":{"issuer":"https://acme.okta.com","id":"00u1"`, `"subject":{"issuer":"https://acme.okta.com""id":"00u1"`, 1),
		strings.Replace(base, `"subject":{"issuer":"https://acme.okta.com"`, `"subject":{,"issuer":"https://acme.okta.com"`, 1),
		strings.Replace(base, `"time":"2026-12-01T14:23:00.818600572Z"`, `"time":"2026-12-01 14:23:00Z"`, 1),
		strings.Replace(base, `"time":"2026-12-01T14:23:00.818600572Z"`, `"time":"2026-12-01T14:23:00+01:00"`, 1),
		strings.Replace(base, `"occurred_at":"2026-11-26T09:00:00Z"`, `"occurred_at":null`, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":{"a":1} `, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":{ "a" : 1 }`, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":{"a":1},"id":"y"`, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":{"a":1}},{"b":{`, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":{"a":}`, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":[1]`, 1),
		strings.Replace(base, `"detail":{"a":1}`, `"detail":{}`, 1),
		strings.Replace(base, `,"detail":{"a":1}`, ``, 1),
		strings.Replace(base, `,"detail":{"a":1}`, `,"extra":1`, 1),
		strings.Replace(base, `"error":"e",`, `"error":"e","error":"f",`, 1),
		base + " ", base + "x", " " + base, base[:len(base)-1], base[:40], `{}`, `null`, `[]`, ``, `{"id":"a"}`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t"}`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t"}x`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t"}{}`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t","detail":{}}`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t","detail":{`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t","detail":}`,
		`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t","detail":{}}}`,
	}
	for _, b := range bodies {
		checkDecode(t, []byte(b))
	}
}

// Any bytes decode as json.Unmarshal decodes them, and what decodes
// encodes as json.Marshal encodes it.
func FuzzRecordJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, _ := json.Marshal(randomRecord(r))
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a","time":"2026-12-01T14:23:00Z","type":"t","detail":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		if rec, err := Decode(data); err == nil {
			checkEncode(t, rec)
		}
	})
}
