// Package natsapi serves the manager's commands over NATS request/reply
// with nats.go/micro: service "sessionbus", queue group "sessionbus", one
// endpoint per subject of the contract (auth.cmd.login, refresh, logout,
// revoke, sessions, jwks) and the operator extensions (auth.cmd.users.*,
// auth.cmd.keys.*).
//
// A request is a CloudEvent, binary or structured mode, whose type must be
// the one its subject expects (jwks also takes an empty body); its data is
// decoded strictly with events.DecodeStrict: unknown fields, a key twice
// and keys that differ only in case are refused (400), and so is a
// structured-mode envelope with a member twice. Errors use the micro
// error headers with a code in HTTP terms and a message that leaks
// nothing; a JSON body repeats them, with retry_after_seconds for 429 and
// 503. Who may send the admin commands is decided by NATS permissions.
//
// Every command is a span named after its subject, a child of the trace
// context of the request's traceparent header (or its ce-traceparent); a
// malformed one is ignored.
package natsapi
