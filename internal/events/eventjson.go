package events

import "github.com/lifecycle-worker/lifecycle-worker/internal/jsonform"

// The planner decodes every event of LIFECYCLE. DecodeEvent reads exactly
// what json.Unmarshal does, with a short path for the form Encode writes
// (package jsonform); eventjson_test.go holds it to encoding/json. The
// subject and scope codecs are shared with the REVOKE jobs' (package
// revoke), which carry both.

// DecodeEvent reads an event's JSON form: what json.Unmarshal gives, value
// and error.
func DecodeEvent(data []byte) (Event, error) { return jsonform.Decode(data, decodeEvent) }

// decodeEvent reads the form Encode writes, reporting false for anything
// else.
func decodeEvent(d *jsonform.Reader, e *Event) bool {
	var source, kind string
	if !d.Lit(`{"id":`) || !d.StrTo(&e.ID) || !d.Lit(`,"source":`) || !d.StrTo(&source) || !d.Lit(`,"kind":`) || !d.StrTo(&kind) ||
		!d.Lit(`,"subject":`) || !ReadSubject(d, &e.Subject) || !d.Lit(`,"scope":`) || !ReadScope(d, &e.Scope) ||
		!d.Lit(`,"occurred_at":`) || !d.Time(&e.OccurredAt) || !d.Lit(`,"received_at":`) || !d.Time(&e.ReceivedAt) ||
		!d.Lit(`,"cause":`) || !d.StrTo(&e.Cause) {
		return false
	}
	e.Source, e.Kind = Source(source), Kind(kind)
	if d.Lit(`,"raw":`) {
		raw, ok := d.TailObject()
		if !ok {
			return false
		}
		e.Raw = raw
	}
	return d.Lit("}")
}

var subjectKeys = []string{`"issuer":`, `"id":`, `"login":`, `"email":`, `"scim_id":`, `"external_id":`}

// AppendSubject writes s as json.Marshal does.
func AppendSubject(b []byte, s Subject) []byte {
	return jsonform.AppendStrings(b, subjectKeys, s.Issuer, s.ID, s.Login, s.Email, s.SCIMID, s.ExternalID)
}

// ReadSubject reads the form AppendSubject writes.
func ReadSubject(d *jsonform.Reader, s *Subject) bool {
	return d.Strings(subjectKeys, &s.Issuer, &s.ID, &s.Login, &s.Email, &s.SCIMID, &s.ExternalID)
}

// AppendScope writes sc as json.Marshal does.
func AppendScope(b []byte, sc Scope) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendRefs(b, `"apps":`, sc.Apps)
	if len(b) > n && len(sc.Groups) > 0 {
		b = append(b, ',')
	}
	b = appendRefs(b, `"groups":`, sc.Groups)
	return append(b, '}')
}

func appendRefs(b []byte, key string, refs []ScopeRef) []byte {
	if len(refs) == 0 {
		return b
	}
	b = append(append(b, key...), '[')
	for i, r := range refs {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonform.AppendString(append(b, `{"id":`...), r.ID)
		b = jsonform.AppendField(b, `,"name":`, r.Name)
		b = append(b, '}')
	}
	return append(b, ']')
}

// ReadScope reads the form AppendScope writes.
func ReadScope(d *jsonform.Reader, sc *Scope) bool {
	if !d.Lit("{") {
		return false
	}
	switch {
	case d.Lit(`"apps":`):
		if !readRefs(d, &sc.Apps) || d.Lit(",") && !(d.Lit(`"groups":`) && readRefs(d, &sc.Groups)) {
			return false
		}
	case d.Lit(`"groups":`):
		if !readRefs(d, &sc.Groups) {
			return false
		}
	}
	return d.Lit("}")
}

// readRefs reads a non-empty list of scope references.
func readRefs(d *jsonform.Reader, out *[]ScopeRef) bool {
	if !d.Lit("[") {
		return false
	}
	for {
		var r ScopeRef
		if !d.Lit(`{"id":`) || !d.StrTo(&r.ID) || !d.OptStr(`,"name":`, &r.Name) || !d.Lit("}") {
			return false
		}
		*out = append(*out, r)
		if d.Lit("]") {
			return true
		}
		if !d.Lit(",") {
			return false
		}
	}
}
