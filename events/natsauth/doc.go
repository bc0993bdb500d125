// Package natsauth is the trust model of the bus: who may connect and what
// each identity may do, enforced by the NATS server with its decentralized
// authentication (an operator, accounts and user JWTs signed with nkeys,
// standard .creds files).
//
// Two accounts matter. AUTH holds the streams (AUTH_EVENTS, and
// AUTH_REVOCATIONS, the revocation and key facts sourced from it), the KV
// buckets and the identities that use JetStream on them: the manager, the
// setup step and auditors. CLIENTS holds services, gateways and operators,
// with JetStream off: they reach AUTH only through its exports (the
// commands, the facts, stream info and direct gets), so a client can
// neither create a consumer nor use up a JetStream limit, and the manager
// learns from the Nats-Request-Info header the server adds to each request
// who sent it.
//
// Every identity has a private inbox, InboxPrefix of its public key: its
// permissions let only it subscribe there. Options derives that prefix from
// a .creds file.
//
// The Authority keeps the operator and account seeds and the register of
// issued identities in a directory (0700, files 0600); revoking an identity
// adds it to its account JWT, which closes its connections as soon as the
// server has the new JWT.
package natsauth
