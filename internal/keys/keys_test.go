package keys

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestGeneratedOnceAndStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "signing-key.pem")
	a, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() || string(a.JWKS()) != string(b.JWKS()) {
		t.Fatal("a second start made a new key")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
}

func TestSignVerifiesAgainstJWKS(t *testing.T) {
	s, err := LoadOrCreate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Sign("logout+jwt", map[string]any{"iss": "https://lw.example", "sub": "u1"})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].KeyID != s.KeyID() {
		t.Fatalf("jwks %s", s.JWKS())
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := tok.Headers[0].ExtraHeaders["typ"]; typ != "logout+jwt" || tok.Headers[0].KeyID != s.KeyID() {
		t.Errorf("header typ %v kid %q", typ, tok.Headers[0].KeyID)
	}
	var cl jwt.Claims
	if err := tok.Claims(set.Keys[0].Key, &cl); err != nil || cl.Subject != "u1" {
		t.Errorf("claims %+v: %v", cl, err)
	}
}

func TestWeakRSARefused(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 1024)
	p := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if _, err := Parse(p); err == nil {
		t.Fatal("1024-bit RSA accepted")
	}
}
