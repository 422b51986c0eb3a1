// Package sim is a local simulator of the services mdeflow calls: the
// Microsoft Entra ID token endpoint (client credentials with a secret or a
// certificate assertion, OpenID discovery, JWKS), the Microsoft Defender for
// Endpoint API (alerts, machines, machine actions, advanced hunting, under
// /api and /api/v1.0) and the Microsoft Graph security and mail endpoints
// (alerts_v2, runHuntingQuery, sendMail, under /v1.0).
//
// It follows /work/shared/reference/defender-api.md §9: OData lists with
// $filter/$top/$skip/$expand/$orderby/$count and @odata.nextLink, the
// documented error bodies ({"error":{"code","message","target"}}), 401/403
// from real JWT checks (signature, expiry, audience, roles per §1.5),
// per-API sliding-window quotas with Retry-After (§6.1), machine actions
// that move Pending → InProgress → Succeeded on the simulator clock,
// ActiveRequestAlreadyExists and OsPlatformNotSupported. Faults (5xx, lost
// responses, latency, 429 storms, failing or timing-out actions) are
// injected from a seeded PRNG.
//
// The real azidentity/azcore clients talk to it over TLS: Start listens on
// 127.0.0.1 with a certificate from a CA generated at New (CertPool,
// CACertPEM), and the authority host is URL()+"/" with instance discovery
// disabled:
//
//	srv, _ := sim.New(sim.Options{})
//	_ = srv.Start()
//	defer srv.Close()
//	cred, _ := azidentity.NewClientSecretCredential(srv.TenantID(), sim.DefaultClientID, sim.DefaultClientSecret,
//		&azidentity.ClientSecretCredentialOptions{
//			ClientOptions: azcore.ClientOptions{
//				Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.AuthorityHost()},
//				Transport: srv.HTTPClient(),
//			},
//			DisableInstanceDiscovery: true,
//		})
//
// Where the documentation is silent ([GAP] in defender-api.md) the choices
// are written next to the code that makes them.
package sim
