package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// Signer signs JWTs with one private key and publishes its public half.
type Signer struct {
	key  crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
	jwk  jose.JSONWebKey
	jwks []byte

	mu      sync.Mutex
	headers map[string]string // base64url JOSE header, by typ
}

// LoadOrCreate loads the PEM private key at path, creating a P-256 key there
// (mode 0600, directory 0700) when the file does not exist.
func LoadOrCreate(path string) (*Signer, error) {
	raw, err := loadOrGenerate(path, func() (any, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) })
	if err != nil {
		return nil, err
	}
	return Parse(raw)
}

// loadOrGenerate reads the PEM key at path, generating it first if absent.
func loadOrGenerate(path string, gen func() (any, error)) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := generate(path, gen); err != nil {
			return nil, err
		}
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return raw, nil
}

func generate(path string, gen func() (any, error)) error {
	k, err := gen()
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	return writeOnce(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// writeOnce creates path holding data unless it exists (mode 0600,
// directory 0700).
func writeOnce(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key dir: %w", err)
	}
	// Written whole to a temporary file, then linked into place: two
	// processes starting on one key dir (replicas sharing a volume) must
	// not overwrite each other's key, and the loser must never read a key
	// file the winner has not finished writing. link(2) fails if the name
	// exists, so exactly one key wins and it is complete when it appears.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create key: %w", err)
	}
	return nil
}

// LoadOrCreateSecret loads the 32-byte symmetric key at path (PEM, type
// SECRET KEY), creating a random one there when the file does not exist.
func LoadOrCreateSecret(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		if err := writeOnce(path, pem.EncodeToMemory(&pem.Block{Type: "SECRET KEY", Bytes: k})); err != nil {
			return nil, err
		}
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "SECRET KEY" || len(b.Bytes) != 32 {
		return nil, fmt.Errorf("%s: not a PEM SECRET KEY of 32 bytes", path)
	}
	return b.Bytes, nil
}

// Parse builds a Signer from a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA).
func Parse(pemBytes []byte) (*Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse signing key: %w", err)
	}
	s := &Signer{headers: map[string]string{}}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("signing key: only the P-256 curve is supported")
		}
		s.key, s.alg = k, jose.ES256
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("signing key: RSA keys must have at least 2048 bits")
		}
		s.key, s.alg = k, jose.RS256
	case ed25519.PrivateKey:
		s.key, s.alg = k, jose.EdDSA
	default:
		return nil, fmt.Errorf("signing key: unsupported key type %T", key)
	}
	s.jwk, err = publicJWK(s.key.Public(), string(s.alg))
	if err != nil {
		return nil, err
	}
	s.kid = s.jwk.KeyID
	s.jwks, err = JWKS(s.jwk)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// publicJWK describes a public key, its kid the RFC 7638 thumbprint.
func publicJWK(pub crypto.PublicKey, alg string) (jose.JSONWebKey, error) {
	k := jose.JSONWebKey{Key: pub, Algorithm: alg, Use: "sig"}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return k, fmt.Errorf("key thumbprint: %w", err)
	}
	k.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return k, nil
}

// JWKS encodes public keys as a JWK Set.
func JWKS(keys ...jose.JSONWebKey) ([]byte, error) {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("encode jwks: %w", err)
	}
	return b, nil
}

// JWK is the public key as a JWK.
func (s *Signer) JWK() jose.JSONWebKey { return s.jwk }

// KeyID is the RFC 7638 thumbprint of the public key, used as `kid`.
func (s *Signer) KeyID() string { return s.kid }

// Algorithm is the JWS algorithm of the key (ES256 or RS256).
func (s *Signer) Algorithm() string { return string(s.alg) }

// JWKS is the public key set as served at /.well-known/jwks.json.
func (s *Signer) JWKS() []byte { return s.jwks }

// Sign returns a compact JWS (RFC 7515 §7.1) of claims with the given `typ`
// header. It is on the hot path of every revocation, so it assembles the
// token itself: the header is encoded once per typ, and an ES256 signature
// is the fixed-width R‖S of RFC 7518 §3.4.
func (s *Signer) Sign(typ string, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	header, err := s.header(typ)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	const sigMax = 512 // RS256 with a 4096-bit key
	buf := make([]byte, 0, len(header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(sigMax))
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	digest := sha256.Sum256(buf)
	var sig []byte
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, buf) // EdDSA signs the signing input itself (RFC 8037 §3.1)
	case *ecdsa.PrivateKey:
		r, ss, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return "", fmt.Errorf("sign %s: %w", typ, err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:]); err != nil {
			return "", fmt.Errorf("sign %s: %w", typ, err)
		}
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// header is the encoded JOSE header for typ: alg, kid and typ.
func (s *Signer) header(typ string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.headers[typ]; ok {
		return h, nil
	}
	raw, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(s.alg), s.kid, typ})
	if err != nil {
		return "", fmt.Errorf("encode header: %w", err)
	}
	h := base64.RawURLEncoding.EncodeToString(raw)
	s.headers[typ] = h
	return h, nil
}

// Algorithms a Ring can hold a key for.
var Algorithms = []string{string(jose.ES256), string(jose.RS256), string(jose.EdDSA)}

// Ring holds the worker's JWT signing keys: the primary one (the
// configured signing key file) and one per further algorithm a target
// asks for, each in a file of its own beside the primary.
type Ring struct {
	primary *Signer
	by      map[string]*Signer
}

// LoadRing loads (or creates) the primary key at path and a key for each
// of algs the primary is not.
func LoadRing(path string, algs []string) (*Ring, error) {
	primary, err := LoadOrCreate(path)
	if err != nil {
		return nil, err
	}
	r := &Ring{primary: primary, by: map[string]*Signer{primary.Algorithm(): primary}}
	for _, alg := range algs {
		if alg == "" || r.by[alg] != nil {
			continue
		}
		gen, ok := generators[alg]
		if !ok {
			return nil, fmt.Errorf("signing key: unsupported algorithm %q (one of %s)", alg, strings.Join(Algorithms, ", "))
		}
		file := filepath.Join(filepath.Dir(path), "signing-key-"+strings.ToLower(alg)+".pem")
		raw, err := loadOrGenerate(file, gen)
		if err != nil {
			return nil, err
		}
		s, err := Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if s.Algorithm() != alg {
			return nil, fmt.Errorf("%s holds a %s key, not %s", file, s.Algorithm(), alg)
		}
		r.by[alg] = s
	}
	return r, nil
}

var generators = map[string]func() (any, error){
	string(jose.ES256): func() (any, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
	string(jose.RS256): func() (any, error) { return rsa.GenerateKey(rand.Reader, 3072) },
	string(jose.EdDSA): func() (any, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err },
}

// Primary is the configured signing key.
func (r *Ring) Primary() *Signer { return r.primary }

// For returns the key for alg ("" is the primary), nil if the ring holds
// none.
func (r *Ring) For(alg string) *Signer {
	if alg == "" {
		return r.primary
	}
	return r.by[alg]
}

// Algorithms are those the ring signs with, primary first.
func (r *Ring) Algorithms() []string {
	out := []string{r.primary.Algorithm()}
	for alg := range r.by {
		if alg != r.primary.Algorithm() {
			out = append(out, alg)
		}
	}
	slices.Sort(out[1:])
	return out
}

// JWKs are the public keys, primary first.
func (r *Ring) JWKs() []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, alg := range r.Algorithms() {
		out = append(out, r.by[alg].JWK())
	}
	return out
}
