// Package sim is a local simulator of the services mdeflow calls: the
// Microsoft Entra ID token endpoint, the Microsoft Defender for Endpoint
// (MDE) API and the Microsoft Graph security and mail endpoints. Tests and
// the demo drive it with the real azidentity/azcore client code over TLS.
//
// # Endpoints
//
// Entra ID (login.microsoftonline.com), tenant = Options.TenantID:
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration   (also /common, /organizations)
//	GET  /{tenant}/discovery/v2.0/keys
//	GET  /common/discovery/instance                        (tolerated; MSAL asks the real host unless DisableInstanceDiscovery)
//	POST /{tenant}/oauth2/v2.0/token                       client_credentials, scope=<resource>/.default,
//	                                                      client_secret or client_assertion (RS256/PS256, x5t/x5t#S256)
//	POST /{tenant}/oauth2/token                            v1, resource=<resource>
//
// MDE, under /api and /api/v1.0 (roles per defender-api.md §1.5):
//
//	GET   /alerts  /alerts/{id}  /alerts/{id}/machine  /machines  /machines/{id|name}  /machines/{id}/alerts
//	PATCH /alerts/{id}
//	POST  /machines/{id}/isolate|unisolate|restrictCodeExecution|unrestrictCodeExecution|runAntiVirusScan|collectInvestigationPackage|tags
//	GET   /machineactions  /machineactions/{id}
//	POST  /machineactions/{id}/cancel  /advancedqueries/run
//
// Graph, under /v1.0:
//
//	GET  /security/alerts_v2  /security/alerts_v2/{id}
//	POST /security/runHuntingQuery  /users/{id|upn}/sendMail
//
// # Behaviour
//
// It follows /work/shared/reference/defender-api.md §9: OData lists with
// $filter/$top/$skip/$expand/$orderby/$count/$select and @odata.nextLink,
// the documented error body {"error":{"code","message","target"}}, 401/403
// from real JWT checks (signature, expiry on the simulator clock, audience,
// roles), per-API sliding-window quotas with Retry-After (§6.1), machine
// actions that move Pending → InProgress → Succeeded on the simulator clock,
// ActiveRequestAlreadyExists and OsPlatformNotSupported. Faults (5xx, lost
// responses, latency, 429 storms, failing or timing-out actions) come from a
// seeded PRNG. Advanced hunting runs a small KQL interpreter (kql.go) over
// Tenant.HuntRows, or Tenant.Hunt when set.
//
// Choices where the sources are silent ([GAP]):
//   - $top above 10000 → 400 ODataError; with $top the MDE lists send no
//     @odata.nextLink (issue #8489), without it they page at Options.PageSize.
//   - Enum literals in $filter must be exact members ('High', not 'high');
//     a quoted datetime literal is a type error, as in ASP.NET OData.
//   - A token for another resource gets 403 on MDE (issue #9246), 401 on Graph.
//   - Quotas are counted per tenant; refused calls do not count. Graph
//     runHuntingQuery has its own 45/min, 1500/h window (429 TooManyRequests).
//   - POST/PATCH bodies need Content-Type application/json (else 415).
//   - PATCH /alerts takes lower camelCase properties only.
//   - Actions by app tokens carry requestor = the app id and requestSource
//     "PublicApi"; a second action of a type still pending on the machine gets
//     400 ActiveRequestAlreadyExists (the alternative "return the pending
//     action" is not simulated).
//
// # Use
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
// Access tokens expire after 3599 s of simulator time: a test that moves the
// clock more than an hour must get a new credential (azidentity caches by
// wall time).
package sim
