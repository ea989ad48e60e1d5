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
	b = events.AppendSubject(append(b, `,"subject":`...), j.Subject)
	b = events.AppendScope(append(b, `,"scope":`...), j.Scope)
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

// DecodeJob reads a job's JSON form: what json.Unmarshal gives, value and
// error.
func DecodeJob(data []byte) (Job, error) { return jsonform.Decode(data, decodeJob) }

// DecodeBatch reads a batch's JSON form: what json.Unmarshal gives. n is
// how many jobs its header announces (BatchHeader): only a capacity hint,
// bounded by MaxBatch (a Job is ~400 bytes).
func DecodeBatch(data []byte, n int) (Batch, error) {
	n = min(max(n, 0), MaxBatch)
	return jsonform.Decode(data, func(d *jsonform.Reader, b *Batch) bool { return decodeBatch(d, b, n) })
}

func decodeBatch(d *jsonform.Reader, b *Batch, n int) bool {
	if !d.Lit(`{"jobs":[`) {
		return false
	}
	b.Jobs = make([]Job, 0, n)
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
	ok := d.Lit(`{"id":`) && d.StrTo(&j.ID) && d.Lit(`,"event_id":`) && d.StrTo(&j.EventID) &&
		d.Lit(`,"target":`) && d.StrTo(&j.Target) && d.Lit(`,"kind":`) && d.StrTo(&kind) &&
		d.Lit(`,"source":`) && d.StrTo(&source) && d.Lit(`,"cause":`) && d.StrTo(&j.Cause)
	if !ok {
		return false
	}
	j.Kind, j.Source = events.Kind(kind), events.Source(source)
	if !d.Lit(`,"subject":`) || !events.ReadSubject(d, &j.Subject) || !d.Lit(`,"scope":`) || !events.ReadScope(d, &j.Scope) {
		return false
	}
	if !d.Lit(`,"occurred_at":`) || !d.Time(&j.OccurredAt) || !d.Lit(`,"received_at":`) || !d.Time(&j.ReceivedAt) ||
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
