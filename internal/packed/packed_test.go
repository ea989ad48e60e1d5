package packed

import (
	"bytes"
	"crypto/rand"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

func TestPackRoundTripsWhatIsWorthPacking(t *testing.T) {
	group := []byte(strings.Repeat(`{"id":"okta:1|as1/succeeded","type":"revocation.succeeded","target":"as1"}`+"\n", 40))
	p, ok := Pack(group)
	if !ok || len(p) >= len(group)/4 {
		t.Fatalf("a group of %d bytes packed to %d (%v)", len(group), len(p), ok)
	}
	if got, err := Unpack(p, []string{S2}); err != nil || !bytes.Equal(got, group) {
		t.Fatalf("unpacked %d bytes, %v", len(got), err)
	}
	if got, err := Unpack(group, nil); err != nil || !bytes.Equal(got, group) {
		t.Fatalf("a message without the header: %d bytes, %v", len(got), err)
	}

	// Not worth it: small, random, or more than a body may be.
	noise := make([]byte, 4<<10)
	rand.Read(noise)
	for name, body := range map[string][]byte{
		"small":  group[:minBody-1],
		"random": noise,
		"large":  bytes.Repeat([]byte("x"), MaxBody+1),
	} {
		if p, ok := Pack(body); ok || !bytes.Equal(p, body) {
			t.Errorf("%s: packed (%v) to %d of %d bytes", name, ok, len(p), len(body))
		}
	}
}

func TestUnpackRefusesWhatItCannotRead(t *testing.T) {
	good := s2.Encode(nil, []byte(strings.Repeat("a record\n", 200)))
	huge := s2.Encode(nil, make([]byte, MaxBody+1)) // valid S2, 1 MiB and a byte of zeros
	for name, c := range map[string]struct {
		data   []byte
		header []string
	}{
		"unknown encoding": {good, []string{"gzip"}},
		"two headers":      {good, []string{S2, S2}},
		"not S2":           {[]byte("plain text, not packed"), []string{S2}},
		"truncated":        {good[:len(good)/2], []string{S2}},
		"too large":        {huge, []string{S2}},
		"empty":            {nil, []string{S2}},
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
		if _, err := Unpack(claim, []string{S2}); !errors.Is(err, ErrBody) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// The errors' text is all it allocates, never the claim.
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated refusing an oversized claim 10 times", n)
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
		got, err := Unpack(data, []string{S2})
		if err != nil && !errors.Is(err, ErrBody) || err == nil && len(got) > MaxBody {
			t.Fatalf("%d bytes, %v", len(got), err)
		}
		if p, ok := Pack(body); ok {
			back, err := Unpack(p, []string{S2})
			if err != nil || !bytes.Equal(back, body) {
				t.Fatalf("packed %d bytes, unpacked %d, %v", len(body), len(back), err)
			}
		}
	})
}
