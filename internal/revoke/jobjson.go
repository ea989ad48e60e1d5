package revoke

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform"
)

// Every job is encoded by the planner and decoded by its executor, on the
// path of every revocation. EncodeJob and DecodeBatch write and read
// exactly what json.Marshal and json.Unmarshal do, with a short path for
// the worker's own form (package jsonform); jobjson_test.go holds them to
// encoding/json.

// EncodeJob returns j's JSON form, byte for byte what json.Marshal(j)
// returns.
func EncodeJob(j Job) ([]byte, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"id":`...)
	b = jsonform.AppendString(b, j.ID)
	b = jsonform.AppendString(append(b, `,"event_id":`...), j.EventID)
	b = jsonform.AppendString(append(b, `,"target":`...), j.Target)
	b = jsonform.AppendString(append(b, `,"kind":`...), string(j.Kind))
	b = jsonform.AppendString(append(b, `,"source":`...), string(j.Source))
	b = jsonform.AppendString(append(b, `,"cause":`...), j.Cause)
	s := j.Subject
	b = jsonform.AppendStrings(append(b, `,"subject":`...), subjectKeys, s.Issuer, s.ID, s.Login, s.Email, s.SCIMID, s.ExternalID)
	b = append(b, `,"scope":{`...)
	n := len(b)
	b = appendRefs(b, `"apps":`, j.Scope.Apps)
	if len(b) > n && len(j.Scope.Groups) > 0 {
		b = append(b, ',')
	}
	b = appendRefs(b, `"groups":`, j.Scope.Groups)
	b = append(b, '}')
	var err error
	for _, t := range [...]struct {
		key string
		t   time.Time
	}{{`,"occurred_at":`, j.OccurredAt}, {`,"received_at":`, j.ReceivedAt}, {`,"planned_at":`, j.PlannedAt}} {
		if b, err = jsonform.AppendTime(b, t.key, t.t); err != nil {
			return json.Marshal(j) // its error
		}
	}
	b = jsonform.AppendInt(b, `,"replay":`, int64(j.Replay))
	if j.ReplayOf != 0 {
		b = strconv.AppendUint(append(b, `,"replay_of":`...), j.ReplayOf, 10)
	}
	if j.Continues {
		b = append(b, `,"continues":true`...)
	}
	if !j.NotBefore.IsZero() {
		if b, err = jsonform.AppendTime(b, `,"not_before":`, j.NotBefore); err != nil {
			return json.Marshal(j)
		}
	}
	return append(b, '}'), nil
}

var (
	subjectKeys = []string{`"issuer":`, `"id":`, `"login":`, `"email":`, `"scim_id":`, `"external_id":`}
	refKeys     = []string{`"id":`, `"name":`}
)

func appendRefs(b []byte, key string, refs []events.ScopeRef) []byte {
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

// DecodeJob reads a job's JSON form: what json.Unmarshal gives, value and
// error.
func DecodeJob(data []byte) (Job, error) { return jsonform.Decode(data, decodeJob) }

// DecodeBatch reads a batch's JSON form: what json.Unmarshal gives.
func DecodeBatch(data []byte) (Batch, error) { return jsonform.Decode(data, decodeBatch) }

func decodeBatch(d *jsonform.Reader, b *Batch) bool {
	if !d.Lit(`{"jobs":[`) {
		return false
	}
	b.Jobs = make([]Job, 0, 64)
	if !d.Lit("]") {
		for {
			b.Jobs = append(b.Jobs, Job{})
			if !decodeJob(d, &b.Jobs[len(b.Jobs)-1]) {
				return false
			}
			if d.Lit("]") {
				break
			}
			if !d.Lit(",") {
				return false
			}
		}
	}
	return d.Lit("}")
}

// decodeJob reads the form EncodeJob writes, reporting false for anything
// else.
func decodeJob(d *jsonform.Reader, j *Job) bool {
	var kind, source string
	ok := d.Lit(`{"id":`) && str(d, &j.ID) && d.Lit(`,"event_id":`) && str(d, &j.EventID) &&
		d.Lit(`,"target":`) && str(d, &j.Target) && d.Lit(`,"kind":`) && str(d, &kind) &&
		d.Lit(`,"source":`) && str(d, &source) && d.Lit(`,"cause":`) && str(d, &j.Cause)
	if !ok {
		return false
	}
	j.Kind, j.Source = events.Kind(kind), events.Source(source)
	s := &j.Subject
	if !d.Lit(`,"subject":`) || !d.Strings(subjectKeys, &s.Issuer, &s.ID, &s.Login, &s.Email, &s.SCIMID, &s.ExternalID) {
		return false
	}
	if !d.Lit(`,"scope":{`) {
		return false
	}
	switch {
	case d.Lit(`"apps":`):
		if !refs(d, &j.Scope.Apps) || d.Lit(",") && !(d.Lit(`"groups":`) && refs(d, &j.Scope.Groups)) {
			return false
		}
	case d.Lit(`"groups":`):
		if !refs(d, &j.Scope.Groups) {
			return false
		}
	}
	if !d.Lit("}") || !d.Lit(`,"occurred_at":`) || !d.Time(&j.OccurredAt) || !d.Lit(`,"received_at":`) || !d.Time(&j.ReceivedAt) ||
		!d.Lit(`,"planned_at":`) || !d.Time(&j.PlannedAt) {
		return false
	}
	if !d.OptIntField(`,"replay":`, &j.Replay) || !d.OptUint(`,"replay_of":`, &j.ReplayOf) {
		return false
	}
	j.Continues = d.Lit(`,"continues":true`)
	if d.Lit(`,"not_before":`) && !d.Time(&j.NotBefore) {
		return false
	}
	return d.Lit("}")
}

func str(d *jsonform.Reader, v *string) bool {
	s, ok := d.Str()
	*v = s
	return ok
}

// refs reads a non-empty list of scope references.
func refs(d *jsonform.Reader, out *[]events.ScopeRef) bool {
	if !d.Lit("[") {
		return false
	}
	for {
		var r events.ScopeRef
		if !d.Lit(`{"id":`) || !str(d, &r.ID) || !d.OptStr(`,"name":`, &r.Name) || !d.Lit("}") {
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
