package kafkasidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// The channel is plaintext by default: the sidecar listens on a unix socket or loopback. When its
// gRPC port is reachable from elsewhere it can require TLS (SIDECAR_TLS_CERT_FILE), a client
// certificate (SIDECAR_TLS_CLIENT_CA_FILE) and a bearer token (SIDECAR_GRPC_TOKEN_FILE); these
// options are the client's side of that.

// WithTLS makes the channel TLS with cfg: RootCAs for the CA that signed the sidecar's certificate
// (nil: the system's roots), Certificates for mutual TLS, ServerName when the address's host is not
// the name in the certificate. LoadTLSConfig builds one from PEM files.
func WithTLS(cfg *tls.Config) Option {
	return WithTransportCredentials(credentials.NewTLS(cfg))
}

// WithTransportCredentials sets the channel's transport credentials (default: insecure), for
// anything WithTLS does not cover, such as credentials that reload certificates.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.transport = creds }
}

// WithToken sends "authorization: Bearer <token>" with every stream. The token is sent over TLS and
// also over a unix socket or plaintext port, where the sidecar accepts it too (RequireTransportSecurity
// is false, so grpc-go does not refuse it there): on a plaintext TCP port anyone who can watch the
// traffic can read it, so use WithTLS whenever the port leaves the pod.
func WithToken(token string) Option {
	return func(c *config) { c.token = &tokenCreds{value: token} }
}

// WithTokenFile is WithToken with the token read from path (surrounding whitespace removed), read again
// whenever the file changes, so a rotated secret is used from the next stream on. Connect fails if the
// file cannot be read; if it later cannot, the stream fails with Unauthenticated.
func WithTokenFile(path string) Option {
	return func(c *config) { c.token = &tokenCreds{path: path} }
}

// LoadTLSConfig builds a TLS configuration from PEM files: caFile is the CA bundle that signed the
// sidecar's certificate ("" for the system's roots); certFile and keyFile are the client certificate
// and key for mutual TLS (both "" without).
func LoadTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("kafkasidecar: CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafkasidecar: no PEM certificate in CA file %s", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("kafkasidecar: give both the client certificate and key files, or neither")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("kafkasidecar: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tokenCreds is the bearer token as per-RPC credentials: a fixed value, or a file read again when its
// size or modification time changed. Its value is never part of an error message.
type tokenCreds struct {
	path string

	mu    sync.Mutex
	value string
	size  int64
	mtime time.Time
}

func (t *tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	token, err := t.current()
	if err != nil {
		// Unauthenticated, not Unavailable: retrying would not make the file readable.
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity is false: the sidecar takes a token over a unix socket too.
func (t *tokenCreds) RequireTransportSecurity() bool { return false }

func (t *tokenCreds) current() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.path != "" {
		info, err := os.Stat(t.path)
		if err != nil {
			return "", fmt.Errorf("kafkasidecar: token file: %w", err)
		}
		if t.value == "" || info.Size() != t.size || !info.ModTime().Equal(t.mtime) {
			data, err := os.ReadFile(t.path)
			if err != nil {
				return "", fmt.Errorf("kafkasidecar: token file: %w", err)
			}
			value := strings.TrimSpace(string(data))
			if err := checkToken(value); err != nil {
				return "", fmt.Errorf("kafkasidecar: token file %s: %w", t.path, err)
			}
			t.value, t.size, t.mtime = value, info.Size(), info.ModTime()
		}
	}
	return t.value, checkToken(t.value)
}

// checkToken: metadata values must be printable ASCII; say so here rather than fail inside gRPC.
func checkToken(token string) error {
	if token == "" {
		return errors.New("the token is empty")
	}
	for i := 0; i < len(token); i++ {
		if token[i] < ' ' || token[i] > '~' {
			return errors.New("the token must be printable ASCII")
		}
	}
	return nil
}
