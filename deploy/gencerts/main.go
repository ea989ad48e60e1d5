// Command gencerts makes the private CA and the certificates of the NATS
// cluster in docker-compose.yml: one per node (nats-1..3, also valid for
// localhost), used for client TLS and for the nodes' mutually
// authenticated routes, and one for the demo profile's authorization server.
// Run it once before `docker compose up`:
//
//	go run ./deploy/gencerts -out deploy/certs
//
// Replace them with your own PKI's certificates in production.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/devcerts"
)

func main() {
	out := flag.String("out", "deploy/certs", "directory for the certificates and keys")
	days := flag.Int("days", 365, "validity in days")
	flag.Parse()
	leaves := map[string][]string{}
	for i := 1; i <= 3; i++ {
		n := fmt.Sprintf("nats-%d", i)
		leaves[n] = []string{n, "localhost", "127.0.0.1"}
	}
	leaves["demo-as"] = []string{"demo-as", "localhost", "127.0.0.1"} // the demo profile's authorization server
	if err := devcerts.Generate(*out, leaves, time.Duration(*days)*24*time.Hour); err != nil {
		fmt.Fprintln(os.Stderr, "gencerts:", err)
		os.Exit(1)
	}
	fmt.Println("wrote the CA and nats-1..3 certificates to", *out)
}
