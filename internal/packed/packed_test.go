package packed

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

func TestPackRoundTripsWhatIsWorthPacking(t *testing.T) {
	group := []byte(strings.Repeat(`{"id":"okta:1|as1/succeeded","type":"revocation.succeeded","target":"as1"}`+"\n", 40))
	p, encoding := Pack(group)
	if encoding != S2Dict1 || len(p) >= len(group)/4 {
		t.Fatalf("a group of %d bytes packed to %d (%q)", len(group), len(p), encoding)
	}
	if got, err := Unpack(p, []string{S2Dict1}); err != nil || !bytes.Equal(got, group) {
		t.Fatalf("unpacked %d bytes, %v", len(got), err)
	}
	if got, err := Unpack(group, nil); err != nil || !bytes.Equal(got, group) {
		t.Fatalf("a message without the header: %d bytes, %v", len(got), err)
	}
	// What an earlier version packed (S2 without a dictionary) still reads.
	if got, err := Unpack(s2.Encode(nil, group), []string{S2}); err != nil || !bytes.Equal(got, group) {
		t.Fatalf("an S2 body: %d bytes, %v", len(got), err)
	}
	// Dictionary-packed bytes are not plain S2: the header decides.
	if got, err := Unpack(p, []string{S2}); err == nil && bytes.Equal(got, group) {
		t.Fatal("a dictionary-packed body read as plain S2")
	}

	// Not worth it: small, random, or more than a body may be.
	noise := make([]byte, 4<<10)
	rand.Read(noise)
	for name, body := range map[string][]byte{
		"small":  group[:minBody-1],
		"random": noise,
		"large":  bytes.Repeat([]byte("x"), MaxBody+1),
	} {
		if p, encoding := Pack(body); encoding != "" || !bytes.Equal(p, body) {
			t.Errorf("%s: packed (%q) to %d of %d bytes", name, encoding, len(p), len(body))
		}
	}
}

// A single record, which repeats little of itself, packs to well under
// half its size with the dictionary of the worker's vocabulary, though its
// values (issuer, people, targets, times) are none of the dictionary's.
func TestDictionaryPacksASingleRecord(t *testing.T) {
	record := []byte(`{"id":"entra:7f3c9a2e-41d0-4b7e-9c1a-55e0d2f8a913|billing-mcp/succeeded","time":"2026-12-02T06:52:05.773038297Z",` +
		`"type":"revocation.succeeded","event_id":"entra:7f3c9a2e-41d0-4b7e-9c1a-55e0d2f8a913","source":"scim","kind":"deprovisioned",` +
		`"subject":{"issuer":"https://login.microsoftonline.com/2c1e7b3a/v2.0","id":"d3b07384-d9a0-4c9f-8e2b-1f0a9c3e5b7d",` +
		`"login":"a.lovelace@contoso.com","email":"a.lovelace@contoso.com"},"target":"billing-mcp","driver":"gtr","attempt":1,` +
		`"outcome":"succeeded","http_status":204,"latency_ms":41,"occurred_at":"2026-12-02T06:51:59Z","detail":{"exposure":` +
		`"unknown: the target declares no max_token_lifetime","jti":"b1946ac9-2d4e-4c3f-9a8b-7e6d5c4b3a29","sub_id_format":"email","time_to_revoke_ms":6230}}`)
	p, encoding := Pack(record)
	if encoding != S2Dict1 || len(p) > len(record)*45/100 {
		t.Fatalf("a record of %d bytes packed to %d (%q); plain S2: %d", len(record), len(p), encoding, len(s2.Encode(nil, record)))
	}
	if got, err := Unpack(p, []string{S2Dict1}); err != nil || !bytes.Equal(got, record) {
		t.Fatalf("unpacked %d bytes, %v", len(got), err)
	}
}

// Dictionary 1 is what every message packed with it needs to be read: it
// never changes. A new dictionary is a new encoding beside it.
func TestDictionaryOneNeverChanges(t *testing.T) {
	sum := sha256.Sum256(dict1Text)
	if got := hex.EncodeToString(sum[:]); got != dict1SHA256 || dict1Repeat != 3084 {
		t.Fatalf("dictionary 1 is now %s with repeat %d: a released dictionary must not change; add a new encoding instead", got, dict1Repeat)
	}
	if !bytes.HasPrefix(dict1Text[dict1Repeat:], []byte(`{"id":"`)) || dict1 == nil {
		t.Fatal("dictionary 1's repeat offset is not where its last record begins")
	}
}

func TestUnpackRefusesWhatItCannotRead(t *testing.T) {
	good := s2.Encode(nil, []byte(strings.Repeat("a record\n", 200)))
	huge := s2.Encode(nil, make([]byte, MaxBody+1)) // valid S2, 1 MiB and a byte of zeros
	dictGood, _ := Pack([]byte(strings.Repeat("a record\n", 200)))
	dictHuge := dict1.Encode(nil, make([]byte, MaxBody+1))
	for name, c := range map[string]struct {
		data   []byte
		header []string
	}{
		"unknown encoding":      {good, []string{"gzip"}},
		"another dictionary":    {good, []string{"s2-dict2"}},
		"two headers":           {good, []string{S2, S2}},
		"dictionary, truncated": {dictGood[:len(dictGood)/2], []string{S2Dict1}},
		"dictionary, too large": {dictHuge, []string{S2Dict1}},
		"not S2":                {[]byte("plain text, not packed"), []string{S2}},
		"truncated":             {good[:len(good)/2], []string{S2}},
		"too large":             {huge, []string{S2}},
		"empty":                 {nil, []string{S2}},
	} {
		if got, err := Unpack(c.data, c.header); !errors.Is(err, ErrBody) {
			t.Errorf("%s: %d bytes, %v; want ErrBody", name, len(got), err)
		}
	}
}

// A body claiming more than MaxBody is refused before anything is
// allocated for it.
func TestUnpackAllocatesNothingForAnOversizedClaim(t *testing.T) {
	claim := []byte{0xff, 0xff, 0xff, 0x7f, 0x00} // a length prefix of 256 MiB, then nothing
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		for _, encoding := range []string{S2, S2Dict1} {
			if _, err := Unpack(claim, []string{encoding}); !errors.Is(err, ErrBody) {
				t.Fatal(err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	// The errors' text is all it allocates, never the claim.
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated refusing an oversized claim 20 times", n)
	}
}

// Whatever a stream holds, Unpack returns a body of at most MaxBody bytes
// or ErrBody, and what Pack packs comes back as it was.
func FuzzUnpack(f *testing.F) {
	group := []byte(strings.Repeat(`{"id":"okta:1|as1/succeeded","type":"revocation.succeeded"}`+"\n", 30))
	p, _ := Pack(group)
	f.Add(p, group)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0x00}, []byte("x"))
	f.Add([]byte("plain"), []byte{})
	f.Fuzz(func(t *testing.T, data, body []byte) {
		for _, encoding := range []string{S2, S2Dict1} {
			got, err := Unpack(data, []string{encoding})
			if err != nil && !errors.Is(err, ErrBody) || err == nil && len(got) > MaxBody {
				t.Fatalf("%s: %d bytes, %v", encoding, len(got), err)
			}
		}
		if p, encoding := Pack(body); encoding != "" {
			back, err := Unpack(p, []string{encoding})
			if err != nil || !bytes.Equal(back, body) {
				t.Fatalf("packed %d bytes, unpacked %d, %v", len(body), len(back), err)
			}
		}
	})
}

// dict1SHA256 is dictionary 1's SHA-256, as released.
const dict1SHA256 = "4a56ff780a0c6281481b6535cb633103d99ea033a4e5b649857d044cf81f9dcd"
