package revoke

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform/jsonformtest"
)

// The codec knows Job's fields by name and order. A field added to Job (or
// to its subject or scope) must be taught to EncodeJob and decodeJob, and
// to this list.
func TestJobCodecKnowsEveryField(t *testing.T) {
	tags := func(typ reflect.Type) (out []string) {
		for f := range typ.Fields() {
			out = append(out, f.Name+" "+f.Tag.Get("json"))
		}
		return out
	}
	have := strings.Join(append(append(append(tags(reflect.TypeFor[Job]()), tags(reflect.TypeFor[events.Subject]())...),
		tags(reflect.TypeFor[events.Scope]())...), tags(reflect.TypeFor[events.ScopeRef]())...), "; ")
	want := "ID id; EventID event_id; Target target; Kind kind; Source source; Cause cause; Subject subject; Scope scope; " +
		"OccurredAt occurred_at; ReceivedAt received_at; PlannedAt planned_at; Replay replay,omitempty; ReplayOf replay_of,omitempty; " +
		"Continues continues,omitempty; NotBefore not_before,omitzero; " +
		"Issuer issuer,omitempty; ID id,omitempty; Login login,omitempty; Email email,omitempty; SCIMID scim_id,omitempty; ExternalID external_id,omitempty; " +
		"Apps apps,omitempty; Groups groups,omitempty; ID id; Name name,omitempty"
	if have != want {
		t.Fatalf("Job's fields changed:\n have %s\n want %s\nteach jobjson.go the new ones", have, want)
	}
}

var strange = []string{"", "a", `quote " inside`, `back\slash`, "a<b", "a>b", "a&b", "line\nbreak\t", "\x00\x1f\x7f",
	"José", "\u2028", "bad \xff utf8", "emoji 😀"}

func randomJob(r *rand.Rand) Job {
	pick := func() string {
		switch r.IntN(4) {
		case 0:
			return strange[r.IntN(len(strange))]
		case 1:
			return ""
		}
		return fmt.Sprintf("okta:bench-%07d", r.IntN(1e7))
	}
	tm := func() time.Time {
		switch r.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("", 3600))
		}
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC()
	}
	refs := func() (out []events.ScopeRef) {
		for range r.IntN(3) {
			out = append(out, events.ScopeRef{ID: pick(), Name: pick()})
		}
		return out
	}
	j := Job{ID: pick(), EventID: pick(), Target: pick(), Kind: events.Kind(pick()), Source: events.Source(pick()), Cause: pick(),
		Subject:    events.Subject{Issuer: pick(), ID: pick(), Login: pick(), Email: pick(), SCIMID: pick(), ExternalID: pick()},
		Scope:      events.Scope{Apps: refs(), Groups: refs()},
		OccurredAt: tm(), ReceivedAt: tm(), PlannedAt: tm(), NotBefore: tm(), Continues: r.IntN(2) == 0}
	if r.IntN(2) == 0 {
		j.Replay, j.ReplayOf = r.IntN(5)-1, uint64(r.Int64N(1<<40))
	}
	return j
}

// EncodeJob writes what json.Marshal writes, byte for byte; DecodeJob and
// DecodeBatch read it back as json.Unmarshal does.
func TestJobCodecIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		var b Batch
		for range r.IntN(8) {
			j := randomJob(r)
			checkEncodeJob(t, j)
			data, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			checkDecodeJob(t, data)
			b.Jobs = append(b.Jobs, j)
		}
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		checkDecodeBatch(t, data)
	}
	late := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	checkEncodeJob(t, Job{ID: "a", PlannedAt: late})
	checkEncodeJob(t, Job{ID: "a", NotBefore: late})
}

func checkEncodeJob(t *testing.T, j Job)       { t.Helper(); jsonformtest.Encodes(t, j, EncodeJob) }
func checkDecodeJob(t *testing.T, data []byte) { t.Helper(); jsonformtest.Decodes(t, data, DecodeJob) }
func checkDecodeBatch(t *testing.T, data []byte) {
	t.Helper()
	for _, n := range []int{0, 1, 100, -1, 1 << 40} { // the header's count is only a hint
		jsonformtest.Decodes(t, data, func(data []byte) (Batch, error) { return DecodeBatch(data, n) })
	}
}

// Forms that are not EncodeJob's decode (or fail) as json.Unmarshal does.
func TestJobDecodeOtherFormsAsEncodingJSON(t *testing.T) {
	job := `{"id":"e|as1","event_id":"e","target":"as1","kind":"deprovisioned","source":"okta-hook","cause":"user.lifecycle.deactivate","subject":{"issuer":"https://acme.okta.com","id":"00u1","email":"a@example.com"},"scope":{"apps":[{"id":"0oa1","name":"App"}],"groups":[{"id":"00g1"}]},"occurred_at":"2026-11-26T09:00:00Z","received_at":"2026-12-01T14:23:00.5Z","planned_at":"2026-12-01T14:23:00.6Z","replay":2,"replay_of":9,"continues":true,"not_before":"2026-12-01T14:24:00Z"}`
	forms := []string{job,
		strings.Replace(job, `"scope":{"apps":[{"id":"0oa1","name":"App"}],"groups":[{"id":"00g1"}]}`, `"scope":{}`, 1),
		strings.Replace(job, `,"groups":[{"id":"00g1"}]`, ``, 1),
		strings.Replace(job, `"apps":[{"id":"0oa1","name":"App"}],`, ``, 1),
		strings.Replace(job, `,"groups":[{"id":"00g1"}]`, `,`, 1),
		strings.Replace(job, `,"groups":[{"id":"00g1"}]`, `,"groups":[]`, 1),
		strings.Replace(job, `,"groups":[{"id":"00g1"}]`, `,"groups":null`, 1),
		strings.Replace(job, `"groups":[{"id":"00g1"}]`, `"groups":[{"id":"00g1"},]`, 1),
		strings.Replace(job, `"groups":[{"id":"00g1"}],`, `"groups":[{"id":"00g1"}]`, 1),
		strings.Replace(job, `{"apps":[{"id":"0oa1","name":"App"}],"groups":[{"id":"00g1"}]}`, `{"groups":[{"id":"00g1"}],"apps":[{"id":"0oa1"}]}`, 1),
		strings.Replace(job, `{"id":"0oa1","name":"App"}`, `{"name":"App","id":"0oa1"}`, 1),
		strings.Replace(job, `{"id":"0oa1","name":"App"}`, `{"name":"App"}`, 1),
		strings.Replace(job, `"continues":true`, `"continues":false`, 1),
		strings.Replace(job, `"continues":true`, `"continues":truex`, 1),
		strings.Replace(job, `,"not_before":"2026-12-01T14:24:00Z"`, ``, 1),
		strings.Replace(job, `"replay":2`, `"replay":2.5`, 1),
		strings.Replace(job, `"replay_of":9`, `"replay_of":-9`, 1),
		strings.Replace(job, `"subject":{"issuer":"https://acme.okta.com","id":"00u1","email":"a@example.com"}`, `"subject":{}`, 1),
		strings.Replace(job, `"subject":{"issuer":"https://acme.okta.com","id":"00u1"`, `"subject":{"id":"00u1","issuer":"https://acme.okta.com"`, 1),
		strings.Replace(job, `"subject":{"issuer":"https://acme.okta.com",`, `"subject":{,`, 1),
		strings.Replace(job, `"id":"00u1",`, `"id":"00u1"`, 1),
		strings.Replace(job, `"cause":"user.lifecycle.deactivate",`, ``, 1),
		strings.Replace(job, `"kind":"deprovisioned"`, `"Kind":"deprovisioned"`, 1),
		strings.Replace(job, `"planned_at":"2026-12-01T14:23:00.6Z"`, `"planned_at":"yesterday"`, 1),
		job + " ", job + "x", job + "{}", job[:len(job)-1], `{}`, `null`, ``,
	}
	for _, f := range forms {
		checkDecodeJob(t, []byte(f))
		checkDecodeBatch(t, []byte(`{"jobs":[`+f+`]}`))
		checkDecodeBatch(t, []byte(`{"jobs":[`+job+`,`+f+`]}`))
	}
	for _, b := range []string{`{"jobs":[]}`, `{"jobs":null}`, `{"jobs":[` + job + `,]}`, `{"jobs":[` + job + `]} `, `{"jobs":[` + job + `]}x`, `{"jobs":[` + job + `]`, `{}`, `[]`} {
		checkDecodeBatch(t, []byte(b))
	}
}

// Any bytes decode as json.Unmarshal decodes them, as a job and as a batch,
// and a job that decodes encodes as json.Marshal encodes it.
func FuzzJobJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 10 {
		b, _ := json.Marshal(Batch{Jobs: []Job{randomJob(r), randomJob(r)}})
		f.Add(b)
		b, _ = json.Marshal(randomJob(r))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeJob(t, data)
		checkDecodeBatch(t, data)
		if j, err := DecodeJob(data); err == nil {
			checkEncodeJob(t, j)
		}
	})
}
