// Package wire implements the Azure Functions custom-handler wire protocol in
// payload mode, on both sides.
//
// Handler side (used by the mdeflow binary): [Server] answers the host's
// readiness ping on "GET /" and decodes "POST /<Function>" invocations into an
// [Invocation]; typed accessors ([Invocation.Timer], [Invocation.ServiceBus],
// [Invocation.HTTP]) decode trigger values defensively; a [Func] returns a
// [Result] that the server writes as {"Outputs":{},"Logs":[],"ReturnValue":null}.
//
// Host side (used by the local Functions host in internal/localhost):
// [EncodeValue] applies the host's value-encoding rule, [TimerPayload],
// [ServiceBusPayload] and [HTTPPayload] build the request bodies exactly as the
// real host does, and [ParseHostResponse], [ParseHTTPOutput] and
// [ServiceBusOutputMessages] read a handler's answer with the host's rules,
// including its traps (non-2xx discards the body, empty bodies hang the real
// host, base64-looking strings turn into bytes).
//
// Everything follows /work/shared/reference/functions-custom-handler-protocol.md
// (section numbers in comments, e.g. §2.2, refer to it).
//
// # Decoding rule
//
// The host encodes every Data and Metadata value (except the HTTP request
// object) with GetHttpScriptInvocationContextValue (§2.2): strings, numbers,
// booleans and arrays arrive as a JSON string holding JSON text ("\"hello\"",
// "4", "true"), objects arrive as objects, bytes as base64. Docs examples and
// some third-party fixtures send single-encoded values instead. The decoders
// here accept both: a JSON string whose content is itself valid JSON is
// unwrapped once, anything else is taken as is.
package wire
