// Package kvstore keeps what managers share and nothing else may read in
// JetStream key-value buckets: users with their password hashes
// (sessionbus_users), and signing keys and the shared secret that keys
// account digests and refresh-token successors (sessionbus_keys). Earlier
// versions also kept refresh replies in sessionbus_grace; refresh
// successors are now derived, and that bucket is no longer used.
//
// None of it is ever on the AUTH_EVENTS stream. The buckets are ordinary
// JetStream streams (KV_<bucket>), so a cluster replicates them like the
// event stream, and NATS permissions keep them to the manager role
// (events/natsauth): services, gateways and operators live in an account
// without JetStream and cannot reach them at all.
package kvstore
