package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A LogEvent as a replay tool might send it: indented, with characters
// json.Marshal would escape.
const prettyLogEvent = `{
  "uuid": "u-1",
  "published": "2026-11-20T10:00:00Z",
  "eventType": "user.lifecycle.deactivate",
  "displayMessage": "Deactivate <Okta> user & more",
  "target": [ {"id": "00ujane", "type": "User", "alternateId": "jane@example.com"} ]
}`

func TestEncodeWritesRawAsItCame(t *testing.T) {
	ev, reason, err := MapOktaLogEvent(json.RawMessage(prettyLogEvent), SourceOktaHook, "https://acme.okta.com", time.Now().UTC(), DefaultOktaMapping())
	if err != nil || reason != "" {
		t.Fatalf("map: %q %v", reason, err)
	}
	b, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) || !bytes.HasSuffix(b, []byte(`,"raw":`+prettyLogEvent+`}`)) {
		t.Fatalf("encoded: %s", b)
	}
	// What a consumer decodes is what json.Marshal would have given it.
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got, std Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &std); err != nil {
		t.Fatal(err)
	}
	var rawGot, rawStd any
	_ = json.Unmarshal(got.Raw, &rawGot)
	_ = json.Unmarshal(std.Raw, &rawStd)
	got.Raw, std.Raw = nil, nil
	if !reflect.DeepEqual(got, std) || !reflect.DeepEqual(rawGot, rawStd) || rawGot == nil {
		t.Errorf("decoded\n %+v %v\nwant\n %+v %v", got, rawGot, std, rawStd)
	}
}

func TestEncodeChecksRawNoDecoderRead(t *testing.T) {
	ev := Event{ID: "scim:1", Source: SourceSCIM, Kind: KindDeprovisioned, Subject: Subject{Login: "jane"}, Raw: json.RawMessage(`{"active":false`)}
	if _, err := ev.Encode(); err == nil || !strings.Contains(err.Error(), "raw is not JSON") {
		t.Errorf("a raw that is not JSON: %v", err)
	}
	ev.Raw = json.RawMessage(`{"active": false}`)
	if b, err := ev.Encode(); err != nil || !bytes.HasSuffix(b, []byte(`"raw":{"active": false}}`)) {
		t.Errorf("a raw that is JSON: %s %v", b, err)
	}
	ev.Raw = nil
	b, err := ev.Encode()
	want, _ := json.Marshal(ev)
	if err != nil || !bytes.Equal(b, want) {
		t.Errorf("no raw: %s %v, want %s", b, err, want)
	}
}
