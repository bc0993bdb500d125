// Package embedded runs the NATS server with JetStream inside the
// sessionbus process: the default mode, and the server of every test.
//
// It is the only non-test importer of nats-server. By default JetStream
// syncs every write to disk before it acknowledges it (sync_interval:
// always), because NATS's own default (a sync every two minutes) loses
// acknowledged messages on power loss.
//
// With Config.Auth set (serve always sets it), the server trusts that
// authority's operator (package natsauth) and every connection needs a
// credential it issued: nothing on the bus is anonymous. The server's own
// in-process connections (the manager, the setup step) use credentials
// minted for them that are never written anywhere (ConnectAs), and
// Identities issues, lists and revokes the others, a revocation closing
// the identity's open connections at once.
package embedded
