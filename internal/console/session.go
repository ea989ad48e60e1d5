package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// session is who signed in, sealed in a cookie: AES-256-GCM under the
// console's key, so a replica holding the same key can read it and nobody
// without the key can forge or read one.
type session struct {
	Subject string    `json:"sub"`
	Name    string    `json:"name,omitempty"`
	Role    string    `json:"role"`
	Via     string    `json:"via"`  // oidc | local
	CSRF    string    `json:"csrf"` // the token every form carries
	Expires time.Time `json:"exp"`
}

// actor names the person on the trail: role, how they signed in, who.
func (s *session) actor() string {
	a := s.Role + ":console-" + s.Via + ":" + s.Subject
	if len(a) > 160 {
		a = a[:160]
	}
	return a
}

// pending is a sign-in under way: what the callback must find again.
type pending struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Return   string    `json:"return,omitempty"`
	Expires  time.Time `json:"exp"`
}

type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, errors.New("console: the session key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts v; purpose is bound as additional data, so a sign-in
// cookie never passes for a session.
func (s *sealer) seal(purpose string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(purpose))), nil
}

func (s *sealer) open(purpose, sealed string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return errors.New("malformed")
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(purpose))
	if err != nil {
		return errors.New("not sealed by this console")
	}
	return json.Unmarshal(plain, v)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// cookies names and sets the console's cookies. Secure ones carry the
// __Host- prefix: host-only, path /, never set over plain HTTP.
type cookies struct{ secure bool }

func (c cookies) name(base string) string {
	if c.secure {
		return "__Host-" + base
	}
	return base
}

func (c cookies) set(w http.ResponseWriter, base, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: c.name(base), Value: value, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
}

func (c cookies) clear(w http.ResponseWriter, base string) {
	http.SetCookie(w, &http.Cookie{Name: c.name(base), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
}

func (c cookies) get(r *http.Request, base string) string {
	ck, err := r.Cookie(c.name(base))
	if err != nil {
		return ""
	}
	return ck.Value
}
