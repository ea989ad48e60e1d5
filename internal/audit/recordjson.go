package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Every record is encoded once and decoded by the indexer, on the path of
// every revocation; encoding/json's reflection was a tenth of the worker's
// CPU there. Encode and Decode produce and read exactly what json.Marshal
// and json.Unmarshal do (the hash chain covers the bytes, so they must not
// differ by a byte); they take a short path for the common shape and hand
// anything else to encoding/json. recordjson_test.go holds them to that,
// field by field and under fuzzing.

// Encode returns rec's JSON form, byte for byte what json.Marshal(rec)
// returns.
func Encode(rec Record) ([]byte, error) {
	b := make([]byte, 0, 512+len(rec.Detail))
	b = append(b, `{"id":`...)
	b = appendString(b, rec.ID)
	if rec.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, rec.Seq, 10)
	}
	b = append(b, `,"time":`...)
	t, err := rec.Time.MarshalJSON()
	if err != nil {
		return json.Marshal(rec) // its error
	}
	b = append(b, t...)
	b = append(b, `,"type":`...)
	b = appendString(b, string(rec.Type))
	b = appendField(b, `,"event_id":`, rec.EventID)
	b = appendField(b, `,"source":`, rec.Source)
	b = appendField(b, `,"kind":`, rec.Kind)
	if s := rec.Subject; s != nil {
		b = append(b, `,"subject":{`...)
		n := len(b)
		b = appendField(b, `,"issuer":`, s.Issuer)
		b = appendField(b, `,"id":`, s.ID)
		b = appendField(b, `,"login":`, s.Login)
		b = appendField(b, `,"email":`, s.Email)
		if len(b) > n {
			b = append(b[:n], b[n+1:]...) // the first field's comma
		}
		b = append(b, '}')
	}
	b = appendField(b, `,"target":`, rec.Target)
	b = appendField(b, `,"driver":`, rec.Driver)
	b = appendInt(b, `,"attempt":`, int64(rec.Attempt))
	b = appendField(b, `,"outcome":`, rec.Outcome)
	b = appendInt(b, `,"http_status":`, int64(rec.HTTPStatus))
	b = appendInt(b, `,"latency_ms":`, rec.LatencyMS)
	b = appendField(b, `,"error":`, rec.Error)
	if rec.OccurredAt != nil {
		t, err := rec.OccurredAt.MarshalJSON()
		if err != nil {
			return json.Marshal(rec)
		}
		b = append(b, `,"occurred_at":`...)
		b = append(b, t...)
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

func appendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(append(b, key...), v)
}

func appendInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

// appendString quotes s as encoding/json does: characters it writes as
// they are take the short path, the rest its own encoder.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plain are the bytes encoding/json writes inside a string as they are,
// escaping HTML: printable ASCII but for the quote, the backslash, <, >
// and &. Others (control characters, non-ASCII, which it checks for
// invalid UTF-8 and U+2028/U+2029) go through encoding/json.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// Decode reads a record's JSON form into rec as json.Unmarshal does, with
// the same result and the same error.
func Decode(data []byte, rec *Record) error {
	if decodeShort(data, rec) {
		return nil
	}
	*rec = Record{}
	return json.Unmarshal(data, rec)
}

// decodeShort reads the form Encode writes — the fields in their order,
// no spaces, strings without escapes, integers, a detail object last — and
// reports false, leaving rec to be reset, for anything else.
func decodeShort(data []byte, rec *Record) bool {
	d := reader{data: data}
	if !d.lit(`{"id":`) {
		return false
	}
	var ok bool
	if rec.ID, ok = d.str(); !ok {
		return false
	}
	if d.lit(`,"seq":`) {
		n, ok := d.uint()
		if !ok {
			return false
		}
		rec.Seq = n
	}
	if !d.lit(`,"time":`) || !d.time(&rec.Time) || !d.lit(`,"type":`) {
		return false
	}
	t, ok := d.str()
	if !ok {
		return false
	}
	rec.Type = Type(t)
	if !d.optStr(`,"event_id":`, &rec.EventID) || !d.optStr(`,"source":`, &rec.Source) || !d.optStr(`,"kind":`, &rec.Kind) {
		return false
	}
	if d.lit(`,"subject":{`) {
		s := &Subject{}
		if !d.subject(s) {
			return false
		}
		rec.Subject = s
	}
	if !d.optStr(`,"target":`, &rec.Target) || !d.optStr(`,"driver":`, &rec.Driver) {
		return false
	}
	var n int64
	if !d.optInt(`,"attempt":`, &n) {
		return false
	}
	if rec.Attempt = int(n); int64(rec.Attempt) != n {
		return false
	}
	if !d.optStr(`,"outcome":`, &rec.Outcome) || !d.optInt(`,"http_status":`, &n) {
		return false
	}
	if rec.HTTPStatus = int(n); int64(rec.HTTPStatus) != n {
		return false
	}
	if !d.optInt(`,"latency_ms":`, &rec.LatencyMS) || !d.optStr(`,"error":`, &rec.Error) {
		return false
	}
	if d.lit(`,"occurred_at":`) {
		t := new(time.Time)
		if !d.time(t) {
			return false
		}
		rec.OccurredAt = t
	}
	if d.lit(`,"detail":{`) {
		// The detail object runs to the record's closing brace.
		// It must end in its own brace: json.Valid allows spaces around a
		// value, which json.Unmarshal would not keep in the RawMessage.
		start, end := d.pos-1, len(d.data)-1
		if end <= start || d.data[end] != '}' || d.data[end-1] != '}' || !json.Valid(d.data[start:end]) {
			return false
		}
		rec.Detail = append(json.RawMessage(nil), d.data[start:end]...)
		d.pos = end
	}
	return d.lit(`}`) && d.pos == len(d.data)
}

// subject reads a subject's fields, in their order, after its brace.
func (d *reader) subject(s *Subject) bool {
	first := true
	for _, f := range [...]struct {
		key string
		v   *string
	}{{`"issuer":`, &s.Issuer}, {`"id":`, &s.ID}, {`"login":`, &s.Login}, {`"email":`, &s.Email}} {
		at := d.pos
		if (!first && !d.lit(",")) || !d.lit(f.key) {
			d.pos = at
			continue
		}
		v, ok := d.str()
		if !ok {
			return false
		}
		*f.v, first = v, false
	}
	return d.lit("}")
}

type reader struct {
	data []byte
	pos  int
}

func (d *reader) lit(s string) bool {
	if len(d.data)-d.pos < len(s) || string(d.data[d.pos:d.pos+len(s)]) != s {
		return false
	}
	d.pos += len(s)
	return true
}

// str reads a string with no escapes and valid UTF-8: its bytes are then
// its value, as json.Unmarshal would give it.
func (d *reader) str() (string, bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return "", false
	}
	rest := d.data[d.pos+1:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return "", false
	}
	s := rest[:end]
	ascii := true
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return "", false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return "", false
	}
	d.pos += end + 2
	return string(s), true
}

func (d *reader) optStr(key string, v *string) bool {
	if !d.lit(key) {
		return true
	}
	s, ok := d.str()
	*v = s
	return ok
}

// int reads an integer as JSON writes one: an optional minus, no leading
// zeros, no fraction or exponent (json.Unmarshal refuses those for an int
// with an error, which the long path then gives).
func (d *reader) int() (int64, bool) {
	i := d.pos
	if i < len(d.data) && d.data[i] == '-' {
		i++
	}
	j := i
	for j < len(d.data) && d.data[j] >= '0' && d.data[j] <= '9' {
		j++
	}
	if j == i || (d.data[i] == '0' && j-i > 1) || (j < len(d.data) && (d.data[j] == '.' || d.data[j] == 'e' || d.data[j] == 'E')) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.data[d.pos:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	d.pos = j
	return n, true
}

func (d *reader) uint() (uint64, bool) {
	if d.pos < len(d.data) && d.data[d.pos] == '-' {
		return 0, false
	}
	i := d.pos
	n, ok := d.int()
	if !ok || n < 0 {
		d.pos = i
		return 0, false
	}
	return uint64(n), true
}

func (d *reader) optInt(key string, v *int64) bool {
	*v = 0
	if !d.lit(key) {
		return true
	}
	n, ok := d.int()
	*v = n
	return ok
}

// time reads a quoted time with the time package's own JSON reader, as
// json.Unmarshal does.
func (d *reader) time(t *time.Time) bool {
	start := d.pos
	if _, ok := d.str(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.data[start:d.pos]) == nil
}
