package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// roundTripFunc is a RoundTripper from a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func okResponse(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusNoContent, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// The User-Agent goes on a copy: the caller's request is not changed (a
// RoundTripper must not), its other headers go along, and a request that
// names its own agent is passed on as it is.
func TestUserAgentOnACopy(t *testing.T) {
	var seen *http.Request
	rt := uaTransport{base: roundTripFunc(func(r *http.Request) (*http.Response, error) { seen = r; return okResponse(r) }), ua: "lifecycle-worker/test"}

	req, _ := http.NewRequest(http.MethodPost, "https://as.example/revoke", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Content-Type", "application/json")
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if seen == req || seen.Header.Get("User-Agent") != "lifecycle-worker/test" {
		t.Fatalf("sent %p (given %p) with User-Agent %q", seen, req, seen.Header.Get("User-Agent"))
	}
	if _, ok := req.Header["User-Agent"]; ok || len(req.Header) != 2 {
		t.Errorf("the caller's request changed: %v", req.Header)
	}
	if seen.Header.Get("Authorization") != "Bearer x" || seen.Header.Get("Content-Type") != "application/json" || seen.URL.String() != req.URL.String() {
		t.Errorf("the copy lost something: %v %v", seen.Header, seen.URL)
	}

	req.Header.Set("User-Agent", "theirs")
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if seen != req || seen.Header.Get("User-Agent") != "theirs" {
		t.Errorf("a request with its own agent was changed: %q", seen.Header.Get("User-Agent"))
	}
}

func BenchmarkUserAgentTransport(b *testing.B) {
	resp := &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}
	rt := uaTransport{base: roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil }), ua: "lifecycle-worker/test"}
	req, _ := http.NewRequest(http.MethodPost, "https://as.example/revoke", nil)
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Content-Type", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rt.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}
