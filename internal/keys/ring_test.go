package keys

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// A ring signs with each algorithm a target may ask for; every token
// verifies with go-jose against the ring's public set, under its own kid,
// and with no other algorithm; reloading gives the same keys.
func TestRingSignsWithEachAlgorithm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "signing-key.pem")
	r, err := LoadRing(path, []string{"RS256", "EdDSA", "ES256", ""})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Algorithms(); len(got) != 3 || got[0] != "ES256" {
		t.Fatalf("algorithms %v", got)
	}
	set := jose.JSONWebKeySet{Keys: r.JWKs()}
	for _, alg := range Algorithms {
		s := r.For(alg)
		tok, err := s.Sign("logout+jwt", map[string]any{"iss": "https://lw.example", "alg-under-test": alg})
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		kid := jws.Signatures[0].Header.KeyID
		keys := set.Key(kid)
		if len(keys) != 1 || keys[0].Algorithm != alg {
			t.Fatalf("%s: kid %s finds %v", alg, kid, keys)
		}
		payload, err := jws.Verify(keys[0].Key)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		var claims map[string]any
		_ = json.Unmarshal(payload, &claims)
		if claims["alg-under-test"] != alg {
			t.Errorf("%s: claims %v", alg, claims)
		}
		for _, other := range Algorithms {
			if other != alg {
				if _, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(other)}); err == nil {
					t.Errorf("a %s token parses as %s", alg, other)
				}
			}
		}
	}
	again, err := LoadRing(path, []string{"EdDSA", "RS256"})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range Algorithms {
		if again.For(alg).KeyID() != r.For(alg).KeyID() {
			t.Errorf("%s: a reload made a new key", alg)
		}
	}
	if _, err := LoadRing(path, []string{"HS256"}); err == nil {
		t.Error("HS256 accepted")
	}
}
