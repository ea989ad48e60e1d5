package audit

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform"
)

// Every record is encoded once and decoded by the indexer, on the path of
// every revocation; with encoding/json the two took 7 % of the worker's
// CPU in the benchmark. Encode and Decode write and read exactly what json.Marshal
// and json.Unmarshal do (the hash chain covers the bytes), with a short
// path for the worker's own form (package jsonform); recordjson_test.go
// holds them to encoding/json.

// Encode returns rec's JSON form, byte for byte what json.Marshal(rec)
// returns.
func Encode(rec Record) ([]byte, error) {
	b := make([]byte, 0, 512+len(rec.Detail))
	b = append(b, `{"id":`...)
	b = jsonform.AppendString(b, rec.ID)
	if rec.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, rec.Seq, 10)
	}
	b, err := jsonform.AppendTime(b, `,"time":`, rec.Time)
	if err != nil {
		return json.Marshal(rec) // its error
	}
	b = append(b, `,"type":`...)
	b = jsonform.AppendString(b, string(rec.Type))
	b = jsonform.AppendField(b, `,"event_id":`, rec.EventID)
	b = jsonform.AppendField(b, `,"source":`, rec.Source)
	b = jsonform.AppendField(b, `,"kind":`, rec.Kind)
	if s := rec.Subject; s != nil {
		b = jsonform.AppendStrings(append(b, `,"subject":`...), subjectKeys, s.Issuer, s.ID, s.Login, s.Email)
	}
	b = jsonform.AppendField(b, `,"target":`, rec.Target)
	b = jsonform.AppendField(b, `,"driver":`, rec.Driver)
	b = jsonform.AppendInt(b, `,"attempt":`, int64(rec.Attempt))
	b = jsonform.AppendField(b, `,"outcome":`, rec.Outcome)
	b = jsonform.AppendInt(b, `,"http_status":`, int64(rec.HTTPStatus))
	b = jsonform.AppendInt(b, `,"latency_ms":`, rec.LatencyMS)
	b = jsonform.AppendField(b, `,"error":`, rec.Error)
	if rec.OccurredAt != nil {
		if b, err = jsonform.AppendTime(b, `,"occurred_at":`, *rec.OccurredAt); err != nil {
			return json.Marshal(rec)
		}
	}
	if len(rec.Detail) > 0 {
		// encoding/json checks a RawMessage and compacts it, escaping
		// HTML characters; so does this call, with the same code.
		d, err := json.Marshal(rec.Detail)
		if err != nil {
			return json.Marshal(rec)
		}
		b = append(b, `,"detail":`...)
		b = append(b, d...)
	}
	return append(b, '}'), nil
}

// Decode reads a record's JSON form: what json.Unmarshal gives, value and
// error.
func Decode(data []byte) (Record, error) { return jsonform.Decode(data, decodeShort) }

// decodeShort reads the form Encode writes — the fields in their order,
// no spaces, strings without escapes, integers, a detail object last — and
// reports false for anything else.
func decodeShort(d *jsonform.Reader, rec *Record) bool {
	if !d.Lit(`{"id":`) {
		return false
	}
	var ok bool
	if rec.ID, ok = d.Str(); !ok {
		return false
	}
	if !d.OptUint(`,"seq":`, &rec.Seq) || !d.Lit(`,"time":`) || !d.Time(&rec.Time) || !d.Lit(`,"type":`) {
		return false
	}
	t, ok := d.Str()
	if !ok {
		return false
	}
	rec.Type = Type(t)
	if !d.OptStr(`,"event_id":`, &rec.EventID) || !d.OptStr(`,"source":`, &rec.Source) || !d.OptStr(`,"kind":`, &rec.Kind) {
		return false
	}
	if d.Lit(`,"subject":`) {
		s := &Subject{}
		if !d.Strings(subjectKeys, &s.Issuer, &s.ID, &s.Login, &s.Email) {
			return false
		}
		rec.Subject = s
	}
	if !d.OptStr(`,"target":`, &rec.Target) || !d.OptStr(`,"driver":`, &rec.Driver) {
		return false
	}
	if !d.OptIntField(`,"attempt":`, &rec.Attempt) || !d.OptStr(`,"outcome":`, &rec.Outcome) ||
		!d.OptIntField(`,"http_status":`, &rec.HTTPStatus) {
		return false
	}
	if !d.OptInt(`,"latency_ms":`, &rec.LatencyMS) || !d.OptStr(`,"error":`, &rec.Error) {
		return false
	}
	if d.Lit(`,"occurred_at":`) {
		t := new(time.Time)
		if !d.Time(t) {
			return false
		}
		rec.OccurredAt = t
	}
	if d.Lit(`,"detail":`) {
		if rec.Detail, ok = d.TailObject(); !ok {
			return false
		}
	}
	return d.Lit(`}`)
}

var subjectKeys = []string{`"issuer":`, `"id":`, `"login":`, `"email":`}
