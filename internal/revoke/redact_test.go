package revoke

import (
	"strings"
	"testing"
)

// A target's secrets (8 characters or more) and anything shaped like a JWT
// never reach the trail through an error or a detail.
func TestRedactHidesSecretsAndJWTs(t *testing.T) {
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyQGV4YW1wbGUuY29tIn0.c2lnbmF0dXJl"
	for _, c := range []struct{ in, want string }{
		{"401: invalid token " + jwt + " (expired)", "401: invalid token [redacted-jwt] (expired)"},
		{"bearer s3cr3t-token-value refused", "bearer [redacted] refused"},
		{"short secret short1 stays", "short secret short1 stays"},
		{"eyJ but not a token.x.y", "eyJ but not a token.x.y"},
		{"plain error", "plain error"},
		{jwt + jwt, "[redacted-jwt]"},
		{"token:" + jwt + "," + jwt + ".", "token:[redacted-jwt],[redacted-jwt]"},
		{"jwe eyJhbGciOiJSU0EtT0FFUCJ9.a2V5a2V5a2V5.aXZpdml2aXY.Y2lwaGVydGV4dA.dGFndGFn end", "jwe [redacted-jwt] end"},
		{"no header eyJzdWIiOiJ1c2VyQGV4YW1wbGUuY29tIn0.c2lnbmF0dXJl", "no header [redacted-jwt]"},
	} {
		if got := Redact(c.in, []string{"s3cr3t-token-value", "short1"}); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// With no secrets, Redact is the JWT pattern's replacement, whatever the
// string: the shortcut for strings without "eyJ" changes nothing.
func FuzzRedact(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyQGV4YW1wbGUuY29tIn0.c2lnbmF0dXJl")
	f.Add("plain")
	f.Add("eyJ")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Redact(s, nil), jwtShape.ReplaceAllString(s, "[redacted-jwt]"); got != want {
			t.Fatalf("Redact(%q) = %q, want %q", s, got, want)
		}
		if strings.Contains(Redact(s, nil), "eyJ") && jwtShape.MatchString(Redact(s, nil)) {
			t.Fatalf("Redact(%q) left a JWT", s)
		}
	})
}
