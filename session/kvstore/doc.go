// Package kvstore keeps what managers share and nothing else may read in
// JetStream key-value buckets: users with their password hashes
// (sessionbus_users), signing keys and the account-key secret
// (sessionbus_keys), and refresh replies within the refresh grace interval
// (sessionbus_grace).
//
// None of it is ever on the AUTH_EVENTS stream. The buckets are ordinary
// JetStream streams (KV_<bucket>), so a cluster replicates them like the
// event stream, and NATS permissions keep them to the manager role: the
// embedded server's service role and the deploy/ configs allow services
// only AUTH_EVENTS and the public commands.
package kvstore
