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
// service role (see ServicePermissions): services may follow the
// revocation and key facts and send login, refresh, logout and jwks
// commands, but can neither read the rest of the stream (failed logins
// would tell which usernames exist), publish facts, nor read the
// manager's key-value buckets (users, keys).
package embedded
