package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// Both key types sign tokens that a JOSE library verifies against the JWKS
// we publish, with the header we promise (alg, kid, typ) and nothing else.
func TestSignBothKeyTypes(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	ec, err := LoadOrCreate(filepath.Join(t.TempDir(), "ec.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse(rsaPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Signer{ec, rs} {
		for _, typ := range []string{"global-token-revocation+jwt", "secevent+jwt"} {
			raw, err := s.Sign(typ, struct {
				Sub string `json:"sub"`
				Exp int64  `json:"exp"`
			}{"ü@example.com", 4102444800})
			if err != nil {
				t.Fatal(err)
			}
			alg := jose.SignatureAlgorithm(s.Algorithm())
			tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
			if err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			h := tok.Headers[0]
			if h.Algorithm != string(alg) || h.KeyID != s.KeyID() || h.ExtraHeaders["typ"] != typ || len(h.ExtraHeaders) != 1 {
				t.Errorf("%s header %+v", alg, h)
			}
			var cl jwt.Claims
			if err := tok.Claims(s.JWK().Key, &cl); err != nil || cl.Subject != "ü@example.com" {
				t.Errorf("%s claims %+v: %v", alg, cl, err)
			}
			// A token signed by another key of the same type must not verify.
			other, _ := LoadOrCreate(filepath.Join(t.TempDir(), "other.pem"))
			if alg == jose.ES256 {
				if err := tok.Claims(other.JWK().Key, &cl); err == nil {
					t.Error("verified with another key")
				}
			}
		}
	}
}

// Replicas starting together on one key dir all get the same, whole key: the
// winner's file appears complete or not at all.
func TestConcurrentFirstStartsShareOneKey(t *testing.T) {
	for round := range 20 {
		path := filepath.Join(t.TempDir(), "keys", "signing-key.pem")
		kids := make(chan string, 8)
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				s, err := LoadOrCreate(path)
				if err != nil {
					errs <- err
					return
				}
				kids <- s.KeyID()
			}()
		}
		seen := map[string]bool{}
		for range 8 {
			select {
			case err := <-errs:
				t.Fatalf("round %d: %v", round, err)
			case k := <-kids:
				seen[k] = true
			}
		}
		if len(seen) != 1 {
			t.Fatalf("round %d: %d different keys", round, len(seen))
		}
	}
}

// Many processes (replicas sharing a volume) starting at once on one key dir
// end with one whole key, the same for all.
func TestConcurrentProcessesShareOneKey(t *testing.T) {
	if path := os.Getenv("LW_KEYS_CHILD"); path != "" {
		s, err := LoadOrCreate(path)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("KID", s.KeyID())
		os.Exit(0)
	}
	for round := range 5 {
		path := filepath.Join(t.TempDir(), "keys", "signing-key.pem")
		var cmds []*exec.Cmd
		var outs []*bytes.Buffer
		for range 8 {
			cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentProcessesShareOneKey$")
			cmd.Env = append(os.Environ(), "LW_KEYS_CHILD="+path)
			out := &bytes.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, out)
		}
		kids := map[string]bool{}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("round %d, process %d: %v\n%s", round, i, err, outs[i])
			}
			for _, line := range strings.Split(outs[i].String(), "\n") {
				if kid, ok := strings.CutPrefix(line, "KID "); ok {
					kids[kid] = true
				}
			}
		}
		if len(kids) != 1 {
			t.Fatalf("round %d: %d different keys among 8 processes", round, len(kids))
		}
	}
}
