package sim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505 -- x5t thumbprints are SHA-1 by definition
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// pki is the simulator's key material: a throw-away CA (ECDSA P-256), the TLS
// leaf it signed for 127.0.0.1/localhost, and the RSA key that signs access
// tokens (with a certificate so that the JWKS carries x5c like Entra's does).
type pki struct {
	caCert   *x509.Certificate
	caPEM    []byte
	pool     *x509.CertPool
	tlsCert  tls.Certificate
	signKey  *rsa.PrivateKey
	signCert *x509.Certificate
	kid      string
}

func newPKI(now time.Time) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	notBefore := now.Add(-time.Hour)
	notAfter := now.Add(7 * 24 * time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "mdeflow simulator CA", Organization: []string{"mdeflow"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating TLS key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating TLS certificate: %w", err)
	}

	signKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating token signing key: %w", err)
	}
	signTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "accounts.sim.mdeflow"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signDER, err := x509.CreateCertificate(rand.Reader, signTmpl, caCert, &signKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating token signing certificate: %w", err)
	}
	signCert, err := x509.ParseCertificate(signDER)
	if err != nil {
		return nil, fmt.Errorf("parsing token signing certificate: %w", err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	sum := sha256.Sum256(signDER)
	return &pki{
		caCert: caCert,
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pool:   pool,
		tlsCert: tls.Certificate{
			Certificate: [][]byte{leafDER, caDER},
			PrivateKey:  leafKey,
		},
		signKey:  signKey,
		signCert: signCert,
		kid:      base64.RawURLEncoding.EncodeToString(sum[:15]),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(err)
	}
	return n
}

// appCert is the public certificate an app registered for client assertions.
type appCert struct {
	cert   *x509.Certificate
	key    crypto.PublicKey
	sha1   []byte // x5t thumbprint (RS256 assertions, ADFS style)
	sha256 []byte // x5t#S256 thumbprint (PS256 assertions, MSAL's default)
}

// matchesThumbprint reports whether a JWT header thumbprint (standard or URL
// base64, padded or not) names this certificate.
func (c appCert) matchesThumbprint(v string, s256 bool) bool {
	b, ok := decodeB64(v)
	if !ok {
		return false
	}
	if s256 {
		return bytes.Equal(b, c.sha256)
	}
	return bytes.Equal(b, c.sha1)
}

func decodeB64(v string) ([]byte, bool) {
	v = strings.TrimRight(v, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			return b, true
		}
	}
	return nil, false
}

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b) // #nosec G401 -- x5t is defined as a SHA-1 thumbprint
	return s[:]
}

// parseAppCerts reads every CERTIFICATE block of pemBytes; the keys must be RSA,
// as Entra ID accepts only RSA certificate credentials.
func parseAppCerts(pemBytes []byte) ([]appCert, error) {
	var out []appCert
	rest := pemBytes
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing app certificate: %w", err)
		}
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parsing app certificate %q: key is %T, Entra ID accepts RSA keys only", c.Subject.CommonName, c.PublicKey)
		}
		s256 := sha256.Sum256(c.Raw)
		out = append(out, appCert{cert: c, key: pub, sha1: sha1Sum(c.Raw), sha256: s256[:]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parsing app certificate: no CERTIFICATE block found")
	}
	return out, nil
}

func b64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
