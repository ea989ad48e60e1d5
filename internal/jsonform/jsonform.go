// Package jsonform reads and writes, quickly, the JSON the worker writes
// itself on the path of every revocation (audit records, jobs), as
// encoding/json writes and reads it: a codec built on it writes exactly
// json.Marshal's bytes and reads exactly json.Unmarshal's values, taking a
// short path for its own form — the fields in their order, no spaces,
// strings without escapes — and handing anything else to encoding/json.
// Each codec's tests hold it to encoding/json, field by field and under
// fuzzing.
package jsonform

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendString quotes s as encoding/json does (escaping HTML): strings of
// plain characters take the short path, any other its own encoder.
func AppendString(b []byte, s string) []byte {
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

// AppendField writes key and v unless v is empty (omitempty).
func AppendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return AppendString(append(b, key...), v)
}

// AppendInt writes key and v unless v is 0 (omitempty).
func AppendInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

// AppendTime writes key and t as time.Time's MarshalJSON does; an error is
// MarshalJSON's (the codec then lets encoding/json say it).
func AppendTime(b []byte, key string, t time.Time) ([]byte, error) {
	q, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(append(b, key...), q...), nil
}

// AppendStrings writes an object of optional string fields: the keys (as
// `"name":`) and values in their order, empty values left out.
func AppendStrings(b []byte, keys []string, vals ...string) []byte {
	b = append(b, '{')
	n := len(b)
	for i, v := range vals {
		if v == "" {
			continue
		}
		if len(b) > n {
			b = append(b, ',')
		}
		b = AppendString(append(b, keys[i]...), v)
	}
	return append(b, '}')
}

// Decode reads data with short, a codec's reader of its own form, or else
// — whole, into a fresh value — with json.Unmarshal: the value and error
// json.Unmarshal would give.
func Decode[T any](data []byte, short func(d *Reader, v *T) bool) (T, error) {
	var v T
	if d := NewReader(data); short(d, &v) && d.Done() {
		return v, nil
	}
	var w T
	err := json.Unmarshal(data, &w)
	return w, err
}

// Reader reads a codec's own form from data; every method reports false
// for anything else, and the codec then hands data to encoding/json.
type Reader struct {
	data []byte
	pos  int
	// text is data as a string, made on the first string read: the values
	// read are substrings of it, one allocation for all of them (they keep
	// the whole of it alive as long as any of them lives).
	text string
}

// NewReader reads data.
func NewReader(data []byte) *Reader { return &Reader{data: data} }

// Lit reads s exactly.
func (d *Reader) Lit(s string) bool {
	if len(d.data)-d.pos < len(s) || string(d.data[d.pos:d.pos+len(s)]) != s {
		return false
	}
	d.pos += len(s)
	return true
}

// Done reports whether all of data was read.
func (d *Reader) Done() bool { return d.pos == len(d.data) }

// Str reads a string with no escapes and valid UTF-8: its bytes are then
// its value, as json.Unmarshal would give it.
func (d *Reader) Str() (string, bool) {
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
	if d.text == "" {
		d.text = string(d.data)
	}
	from := d.pos + 1
	d.pos += end + 2
	return d.text[from : from+end], true
}

// StrTo reads a string, as Str does, into v.
func (d *Reader) StrTo(v *string) bool {
	s, ok := d.Str()
	*v = s
	return ok
}

// Strings reads an object AppendStrings writes, setting vals of the keys
// present.
func (d *Reader) Strings(keys []string, vals ...*string) bool {
	if !d.Lit("{") {
		return false
	}
	first := true
	for i, k := range keys {
		at := d.pos
		if !first && !d.Lit(",") || !d.Lit(k) {
			d.pos = at // not this key: the next key's turn
			continue
		}
		v, ok := d.Str()
		if !ok {
			return false
		}
		*vals[i], first = v, false
	}
	return d.Lit("}")
}

// OptStr reads key and a string into v, if key comes next.
func (d *Reader) OptStr(key string, v *string) bool {
	return !d.Lit(key) || d.StrTo(v)
}

// Int reads an integer as JSON writes one: an optional minus, no leading
// zeros, no fraction or exponent (json.Unmarshal refuses those for an
// integer, with an error the long path then gives), within int64.
func (d *Reader) Int() (int64, bool) {
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

// Uint reads a non-negative integer within int64 (json.Unmarshal takes
// larger ones for a uint64; the long path reads those).
func (d *Reader) Uint() (uint64, bool) {
	if d.pos < len(d.data) && d.data[d.pos] == '-' {
		return 0, false
	}
	n, ok := d.Int()
	return uint64(n), ok
}

// OptInt reads key and an integer into v (0 if key does not come next).
func (d *Reader) OptInt(key string, v *int64) bool {
	*v = 0
	if !d.Lit(key) {
		return true
	}
	n, ok := d.Int()
	*v = n
	return ok
}

// OptUint reads key and an unsigned integer into v (0 if key does not come
// next).
func (d *Reader) OptUint(key string, v *uint64) bool {
	*v = 0
	if !d.Lit(key) {
		return true
	}
	n, ok := d.Uint()
	*v = n
	return ok
}

// OptIntField is OptInt for an int field: false also when the number does
// not fit an int, where json.Unmarshal fails.
func (d *Reader) OptIntField(key string, v *int) bool {
	var n int64
	ok := d.OptInt(key, &n)
	*v = int(n)
	return ok && int64(*v) == n
}

// Time reads a quoted time with the time package's own JSON reader, as
// json.Unmarshal does.
func (d *Reader) Time(t *time.Time) bool {
	start := d.pos
	if _, ok := d.Str(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.data[start:d.pos]) == nil
}

// TailObject reads an object that runs to data's last byte, which must
// close the object around it ("…,"detail":{…}}"): the JSON form's last
// field. The object must end in its own brace — json.Valid allows spaces
// around a value, which json.Unmarshal would not keep in a RawMessage —
// and be valid.
func (d *Reader) TailObject() (json.RawMessage, bool) {
	start, end := d.pos, len(d.data)-1
	if end-start < 2 || d.data[start] != '{' || d.data[end] != '}' || d.data[end-1] != '}' || !json.Valid(d.data[start:end]) {
		return nil, false
	}
	d.pos = end
	return append(json.RawMessage(nil), d.data[start:end]...), true
}
