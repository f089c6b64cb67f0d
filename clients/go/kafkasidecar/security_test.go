package kafkasidecar

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

// pki is a throwaway CA writing PEM files into a test's temporary directory.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	ca   string // the CA's PEM file
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.cert, p.key, _, _ = p.sign(t, "test-ca", nil)
	p.ca = filepath.Join(p.dir, "ca.pem")
	return p
}

// sign makes a certificate (a CA when p.cert is nil, else a leaf for 127.0.0.1 signed by it) and writes
// it and its key as PEM files named after name.
func (p *pki) sign(t *testing.T, name string, usage []x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  usage,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	parent, signer := tmpl, key
	if p.cert == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		parent, signer = p.cert, p.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	if p.cert == nil {
		certFile = filepath.Join(p.dir, "ca.pem")
	}
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return cert, key, certFile, keyFile
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startMTLS serves a fake sidecar that wants a client certificate from p, and connects to it.
func startMTLS(t *testing.T, p *pki, opts ...Option) (*Consumer, *fakeSidecar) {
	t.Helper()
	_, _, certFile, keyFile := p.sign(t, "sidecar", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(p.cert)
	server := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: clients, ClientAuth: tls.RequireAndVerifyClientCert,
	})))
	return serveWith(t, server, opts...)
}

func serveWith(t *testing.T, server *grpc.Server, opts ...Option) (*Consumer, *fakeSidecar) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeSidecar{streams: make(chan *fakeStream, 10)}
	pb.RegisterConsumerServiceServer(server, fake)
	go server.Serve(lis)
	c, err := Connect(lis.Addr().String(), append([]Option{WithMaxInFlight(10),
		WithReconnectBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close(ctx(t))
		server.Stop()
	})
	return c, fake
}

func authorization(s *fakeStream) string {
	md, _ := metadata.FromIncomingContext(s.srv.Context())
	return strings.Join(md.Get("authorization"), ",")
}

func TestMutualTLSWithATokenFileReadAgainWhenItChanges(t *testing.T) {
	p := newPKI(t)
	_, _, certFile, keyFile := p.sign(t, "app", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	cfg, err := LoadTLSConfig(p.ca, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	write(t, tokenFile, []byte("first-token\n"))
	c, fake := startMTLS(t, p, WithTLS(cfg), WithTokenFile(tokenFile))

	s := fake.stream(t)
	if got := authorization(s); got != "Bearer first-token" {
		t.Fatalf("first stream: authorization %q", got)
	}
	s.send(t, rec(3))
	if recs, err := c.NextBatch(ctx(t)); err != nil || len(recs) != 1 || recs[0].Offset != 3 {
		t.Fatalf("NextBatch: %v, %v", recs, err)
	}
	write(t, tokenFile, []byte("second-token-longer"))
	s.end <- status.Error(codes.Unavailable, "restarting")
	if got := authorization(fake.stream(t)); got != "Bearer second-token-longer" {
		t.Fatalf("after the file changed: authorization %q", got)
	}
}

func TestMutualTLSWithoutTokenSendsNoAuthorization(t *testing.T) {
	p := newPKI(t)
	_, _, certFile, keyFile := p.sign(t, "app", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	cfg, err := LoadTLSConfig(p.ca, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, fake := startMTLS(t, p, WithTLS(cfg))
	if got := authorization(fake.stream(t)); got != "" {
		t.Fatalf("authorization %q without a token", got)
	}
}

func TestUnauthenticatedFailsTheConsumer(t *testing.T) {
	c, fake := start(t, WithToken("wrong"))
	s := fake.stream(t)
	if got := authorization(s); got != "Bearer wrong" {
		t.Fatalf("over plaintext the token is sent too; got %q", got)
	}
	s.end <- status.Error(codes.Unauthenticated, "missing or wrong bearer token")
	_, err := c.NextBatch(ctx(t))
	var se *SidecarError
	if !errors.As(err, &se) || se.Code != codes.Unauthenticated {
		t.Fatalf("want a SidecarError with Unauthenticated, got %v", err)
	}
}

func TestWithoutAClientCertificateNoStreamOpens(t *testing.T) {
	p := newPKI(t)
	cfg, err := LoadTLSConfig(p.ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, fake := startMTLS(t, p, WithTLS(cfg))
	select {
	case <-fake.streams:
		t.Fatal("a stream opened without a client certificate")
	case <-time.After(500 * time.Millisecond):
	}
}

func TestSecurityOptionsAreChecked(t *testing.T) {
	dir := t.TempDir()
	if _, err := Connect("127.0.0.1:1", WithTokenFile(filepath.Join(dir, "absent"))); err == nil {
		t.Fatal("Connect with a missing token file succeeded")
	}
	if _, err := Connect("127.0.0.1:1", WithToken("two\nlines")); err == nil {
		t.Fatal("Connect with a token that is not printable ASCII succeeded")
	} else if strings.Contains(err.Error(), "two") {
		t.Fatalf("the error shows the token: %v", err)
	}
	if _, err := LoadTLSConfig("", "client.crt", ""); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
	if _, err := LoadTLSConfig(filepath.Join(dir, "absent.pem"), "", ""); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	write(t, filepath.Join(dir, "empty.pem"), []byte("not PEM"))
	if _, err := LoadTLSConfig(filepath.Join(dir, "empty.pem"), "", ""); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
}
