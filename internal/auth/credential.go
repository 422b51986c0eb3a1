package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Credential kinds.
const (
	KindSecret           = "secret"
	KindCertificate      = "certificate"
	KindManagedIdentity  = "managedidentity"
	KindWorkloadIdentity = "workloadidentity"
	KindDefault          = "default"
)

// CredentialConfig selects and configures the Entra ID credential. Field
// names appear in error messages so that the operator knows which setting
// is missing.
type CredentialConfig struct {
	// Kind is secret, certificate, managedidentity, workloadidentity or default.
	Kind     string
	TenantID string
	ClientID string
	// ClientSecret is used by Kind secret. Never logged.
	ClientSecret string
	// CertificatePath is a PEM or PKCS#12 file with the certificate and its
	// private key (Kind certificate).
	CertificatePath string
	// CertificatePassword decrypts a PKCS#12 file. Never logged.
	CertificatePassword string
	// ManagedIdentityClientID selects a user-assigned identity; empty means
	// the system-assigned identity.
	ManagedIdentityClientID string
	// FederatedTokenFile is the workload identity token file; empty means
	// AZURE_FEDERATED_TOKEN_FILE.
	FederatedTokenFile string
	// AuthorityHost is the Entra sign-in host (Profile.AuthorityHost); empty
	// means the public cloud. A host that is not a public Entra host gets
	// instance discovery disabled.
	AuthorityHost string
	// Transport carries the token requests; nil means the SDK default (or the
	// ExtraCAFile client).
	Transport policy.Transporter
	// ExtraCAFile is a PEM file of additional trusted CAs, for the local
	// simulator only.
	ExtraCAFile string
}

// NewCredential builds the azidentity credential that cfg describes. Every
// missing setting is named in the error.
func NewCredential(cfg CredentialConfig) (azcore.TokenCredential, error) {
	kind := strings.ToLower(strings.TrimSpace(cfg.Kind))
	if kind == "" {
		kind = KindSecret
	}
	var missing []string
	need := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
		}
	}
	switch kind {
	case KindSecret:
		need("TenantID", cfg.TenantID)
		need("ClientID", cfg.ClientID)
		need("ClientSecret", cfg.ClientSecret)
	case KindCertificate:
		need("TenantID", cfg.TenantID)
		need("ClientID", cfg.ClientID)
		need("CertificatePath", cfg.CertificatePath)
	case KindManagedIdentity, KindDefault:
	case KindWorkloadIdentity:
		// azidentity falls back to AZURE_TENANT_ID/AZURE_CLIENT_ID/
		// AZURE_FEDERATED_TOKEN_FILE; report only what neither provides.
		if cfg.TenantID == "" && os.Getenv("AZURE_TENANT_ID") == "" {
			missing = append(missing, "TenantID (or AZURE_TENANT_ID)")
		}
		if cfg.ClientID == "" && os.Getenv("AZURE_CLIENT_ID") == "" {
			missing = append(missing, "ClientID (or AZURE_CLIENT_ID)")
		}
		if cfg.FederatedTokenFile == "" && os.Getenv("AZURE_FEDERATED_TOKEN_FILE") == "" {
			missing = append(missing, "FederatedTokenFile (or AZURE_FEDERATED_TOKEN_FILE)")
		}
	default:
		return nil, fmt.Errorf("credential kind %q: want secret, certificate, managedidentity, workloadidentity or default", cfg.Kind)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s credential: missing setting %s", kind, strings.Join(missing, ", "))
	}

	co := azcore.ClientOptions{Transport: cfg.Transport}
	if co.Transport == nil && cfg.ExtraCAFile != "" {
		hc, err := HTTPClientWithExtraCA(cfg.ExtraCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s credential: %w", kind, err)
		}
		co.Transport = hc
	}
	disableDiscovery := false
	if cfg.AuthorityHost != "" {
		if err := checkHTTPS(cfg.AuthorityHost); err != nil {
			return nil, fmt.Errorf("%s credential: AuthorityHost: %w", kind, err)
		}
		host := cfg.AuthorityHost
		if !strings.HasSuffix(host, "/") {
			host += "/"
		}
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: host}
		disableDiscovery = !KnownAuthority(host)
	}

	switch kind {
	case KindSecret:
		c, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: disableDiscovery})
		if err != nil {
			return nil, fmt.Errorf("creating client secret credential: %w", err)
		}
		return c, nil
	case KindCertificate:
		data, err := os.ReadFile(cfg.CertificatePath)
		if err != nil {
			return nil, fmt.Errorf("reading CertificatePath: %w", err)
		}
		var pw []byte
		if cfg.CertificatePassword != "" {
			pw = []byte(cfg.CertificatePassword)
		}
		certs, key, err := azidentity.ParseCertificates(data, pw)
		if err != nil {
			// The parse error never contains the password or key material.
			return nil, fmt.Errorf("parsing CertificatePath %s: %w", cfg.CertificatePath, err)
		}
		c, err := azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: disableDiscovery})
		if err != nil {
			return nil, fmt.Errorf("creating client certificate credential: %w", err)
		}
		return c, nil
	case KindManagedIdentity:
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if cfg.ManagedIdentityClientID != "" {
			o.ID = azidentity.ClientID(cfg.ManagedIdentityClientID)
		}
		c, err := azidentity.NewManagedIdentityCredential(o)
		if err != nil {
			return nil, fmt.Errorf("creating managed identity credential: %w", err)
		}
		return c, nil
	case KindWorkloadIdentity:
		c, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, TenantID: cfg.TenantID, ClientID: cfg.ClientID,
			TokenFilePath: cfg.FederatedTokenFile, DisableInstanceDiscovery: disableDiscovery,
		})
		if err != nil {
			return nil, fmt.Errorf("creating workload identity credential: %w", err)
		}
		return c, nil
	default: // KindDefault
		c, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: co, TenantID: cfg.TenantID, DisableInstanceDiscovery: disableDiscovery,
		})
		if err != nil {
			return nil, fmt.Errorf("creating default Azure credential: %w", err)
		}
		return c, nil
	}
}

// HTTPClientWithExtraCA returns an HTTP client that trusts the system roots
// plus the PEM certificates in path (the local simulator's CA). Use it for
// both the credential and the API clients.
func HTTPClientWithExtraCA(path string) (*http.Client, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading ExtraCAFile: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("ExtraCAFile: no PEM certificate found")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}
