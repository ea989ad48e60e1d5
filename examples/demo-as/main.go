// Command demo-as is a Global Token Revocation endpoint for the quick start:
// it verifies each request as a real authorization server would (our JWT
// against the worker's JWKS, typ, iss, aud, jti, sub_id) and prints it.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9090", "address to serve on")
	issuer := flag.String("issuer", "http://127.0.0.1:8080", "the worker's public_url (expected iss)")
	jwks := flag.String("jwks", "http://127.0.0.1:8080/.well-known/jwks.json", "the worker's JWKS")
	cert := flag.String("cert", "", "serve https with this certificate (PEM; with -key), e.g. in a container network")
	key := flag.String("key", "", "the certificate's key (PEM)")
	endpoint := flag.String("endpoint", "", "this endpoint's URL as the worker names it (the expected aud), when not the listen address")
	flag.Parse()
	var tlsCfg *tls.Config
	if *cert != "" {
		c, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo-as:", err)
			os.Exit(1)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	r := gtrtest.New(gtrtest.Options{Listen: *listen, Issuer: *issuer, JWKSURL: *jwks, TLS: tlsCfg, URL: *endpoint, Script: func(n int, sid map[string]string) int {
		fmt.Printf("revoked all tokens of %v (request %d)\n", sid, n)
		return 204
	}, OnReject: func(why string) { fmt.Println("rejected a request:", why) }})
	defer r.Close()
	fmt.Printf("demo authorization server: POST %s\n", r.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
