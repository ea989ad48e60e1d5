package outauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
)

// issue makes a certificate signed by ca (self-signed when ca is nil).
func issue(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
		ca, caKey = tmpl, key
	} else if server {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// Mutual TLS: a target that requires a client certificate from our CA
// accepts ours and refuses a client without one.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM, _ := issue(t, "test ca", nil, nil, false)
	srvCert, srvKey, srvPEM, _ := issue(t, "as.test", ca, caKey, true)
	_, _, cliPEM, cliKeyPEM := issue(t, "lifecycle-worker", ca, caKey, false)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", caPEM), write("client.pem", cliPEM), write("client-key.pem", cliKeyPEM)
	_ = srvPEM

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "lifecycle-worker" {
			w.WriteHeader(403)
			return
		}
		w.WriteHeader(204)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}}}
	srv.StartTLS()
	defer srv.Close()

	cfg, err := outauth.TLS(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := client.Get(srv.URL)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("with our certificate: %v %v", err, resp)
	}
	resp.Body.Close()
	noCert, _ := outauth.TLS("", "", caFile)
	if resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}).Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate got through")
	}
}
