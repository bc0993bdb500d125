// Package denylist keeps a service's local deny-list of revoked sessions,
// access tokens, users and signing keys, fed from the revocation facts on
// the JetStream stream AUTH_EVENTS (subjects auth.events.*.revoked.>), so
// that a revoked session is refused everywhere within milliseconds rather
// than at token expiry.
//
// # Entries
//
// Four kinds, each keyed by the id of its fact and kept until its
// deny_until plus Config.Grace (default 1m, which covers clock skew and the
// verifiers' leeway on exp):
//
//   - session (sid claim), from session.revoked;
//   - token (jti claim), from token.revoked;
//   - user (sub claim) with revoked_before, from user.revoked: a token of
//     that user is denied when its iat or its auth_time (the start of its
//     session) is before revoked_before, so a token refreshed after the
//     revocation from a session that began before it is denied too; a
//     token of that user without iat or auth_time is denied;
//   - key (kid header), from key.revoked: every token it signed.
//
// Facts may arrive twice or out of order: an id keeps its latest
// deny_until and a user its latest revoked_before; nothing un-revokes.
// A revocation whose deny_until plus Grace has passed is not stored, and
// a sweep every Config.SweepInterval (default 10s) drops entries as they
// pass it, so memory follows what is still relevant (about 95 B per entry
// with ULID ids, ids included). Unknown types or versions and malformed messages are
// skipped and counted, never fatal.
//
// # Catch-up and readiness
//
// Run replays the revocations stored within Config.Lookback (default 15m)
// before now, by start time. Lookback must be at least the longest
// access-token lifetime (Config.MaxTokenTTL, default 5m, the manager's
// default --access-ttl): every revocation still in force was published
// less than one lifetime before its deny_until. A revocation whose
// deny_until lies further than Lookback after its publication is logged
// and counted (sessionbus_denylist_revocations_beyond_lookback_total): a
// restart after Lookback would miss it.
//
// Ready is closed, and Check stops returning ErrNotReady, only once the
// list has caught up: a read of the stored revocations reached the end of
// AUTH_REVOCATIONS, and that stream's sourcing from AUTH_EVENTS was known
// to be caught up at a moment after Run started. Until then a service
// must refuse tokens: one revoked while the service was down must never
// be accepted.
//
// # Following the revocations without a consumer
//
// Run needs only a service identity (events/natsauth.RoleService), which
// can create no consumer at all: nothing a service does can touch another
// identity's consumers or use up a JetStream limit, and no other identity
// can reach, stall or re-filter a service's feed, because there is no
// consumer to reach. It reads two things:
//
//   - live, a core subscription to auth.events.*.revoked.>: each
//     revocation is applied as the manager publishes it (the manager alone
//     may publish facts);
//   - stored, AUTH_REVOCATIONS, the revocation and key facts that the
//     stream sources from AUTH_EVENTS: batch direct gets from where the
//     last read stopped (from Lookback ago at start), every
//     Config.Heartbeat (default 1s), until the end.
//
// A revocation the live subscription missed (a reconnect, a server
// restart) is applied by the next read. Facts come twice as a rule;
// applying is idempotent. A fact whose Nats-Msg-Id is not its ce-id was
// not stored by a manager as a fact and is skipped (msgid_mismatch).
//
// # Staleness
//
// Staleness is the time since the list was last known to hold every
// revocation stored in AUTH_EVENTS: before each read, the list asks
// AUTH_REVOCATIONS (auth.revocations.info) how far its sourcing has come
// (the last moment its source reported nothing pending, a message or an
// idle heartbeat at least once a second); a read that then reaches the end
// makes the list fresh as of that moment. A quiet stream therefore stays
// fresh; an outage, or sourcing that lags or fails, makes staleness grow.
//
// Past Config.MaxStaleness (default 30s) Config.StalePolicy decides what
// Check answers. The default, FailClosed, returns ErrStale and the
// middleware answers 503 until the list is fresh again: the promise of
// sessionbus is that a revoked token stops working, and while the stream
// is unreachable logins and refreshes fail anyway, so an outage already
// ends every session within one token lifetime. FailOpen keeps serving
// with the last known list; a token revoked during the outage then works
// until it expires (at most MaxTokenTTL).
//
// # Lookups
//
// Denied takes the verified claims (sid, jti, sub, kid, iat, auth_time)
// and costs a few map lookups with no allocation; sessions, tokens and
// users live in 64 read-write-locked shards each, withdrawn keys (few,
// read by every request) in a copy-on-write map read without a lock.
//
// # Metrics
//
// With Config.Registerer: sessionbus_denylist_entries{kind},
// _events_applied_total{kind}, _events_skipped_total{reason},
// _apply_lag_seconds (stored to applied, once caught up),
// _staleness_seconds, _ready, _last_sequence, _consumer_errors_total and
// _revocations_beyond_lookback_total.
//
// # Tracing
//
// Applying a revocation that carries a trace context (ce-traceparent) is
// a span, "denylist apply <type>", a child of the span that published
// it, made with Config.TracerProvider (default the global provider).
package denylist
