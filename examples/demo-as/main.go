// Command demo-as is a Global Token Revocation endpoint for the quick start:
// it verifies each request as a real authorization server would (our JWT
// against the worker's JWKS, typ, iss, aud, jti, sub_id) and prints it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9090", "address to serve on")
	issuer := flag.String("issuer", "http://127.0.0.1:8080", "the worker's public_url (expected iss)")
	jwks := flag.String("jwks", "http://127.0.0.1:8080/.well-known/jwks.json", "the worker's JWKS")
	flag.Parse()
	r := gtrtest.New(gtrtest.Options{Listen: *listen, Issuer: *issuer, JWKSURL: *jwks, Script: func(n int, sid map[string]string) int {
		fmt.Printf("revoked all tokens of %v (request %d)\n", sid, n)
		return 204
	}, OnReject: func(why string) { fmt.Println("rejected a request:", why) }})
	defer r.Close()
	fmt.Printf("demo authorization server: POST %s\n", r.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
}
