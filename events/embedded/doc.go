// Package embedded runs the NATS server with JetStream inside the
// sessionbus process: the default mode, and the server of every test.
//
// It is the only non-test importer of nats-server. By default JetStream
// syncs every write to disk before it acknowledges it (sync_interval:
// always), because NATS's own default (a sync every two minutes) loses
// acknowledged messages on power loss.
//
// With a manager password set, the server requires it from the manager
// and its operators, and maps every connection without credentials to the
// service role (see ServicePermissions): services may read the event
// stream and send login, refresh, logout and jwks commands, but can neither
// publish facts nor read the manager's key-value buckets (users, keys).
package embedded
