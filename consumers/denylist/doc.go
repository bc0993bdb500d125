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
// list has caught up: a message left nothing pending, or the consumer
// reached the position its first delivery reported as the last one
// (consumer sequence plus pending count, counted after Run started), or a
// probe found nothing pending. Until then a service must refuse tokens:
// one revoked while the service was down must never be accepted.
//
// Run needs only the service role of the NATS server: creating an
// ephemeral consumer filtered on auth.events.*.revoked.>, its info and
// its pull requests. It asks for no stream info and reads no other
// subject.
//
// # Following the stream
//
// Run uses a JetStream ordered consumer (ephemeral, in memory, no acks,
// filtered on the revocation subjects) with idle heartbeats every
// Config.Heartbeat (default 1s). On a reconnect, a missed heartbeat or a
// server restart (which loses the in-memory consumer) the consumer is
// recreated from the stream sequence after the last one handled, so an
// outage leaves no gap; events are applied in the consumer's callback, with
// no queue in between.
//
// # Staleness
//
// Staleness is the time since the list was last known to hold every
// revocation on the stream: a message that left nothing pending, or a
// probe (consumer info, every Heartbeat) that found nothing pending and
// nothing delivered but unhandled. A quiet stream therefore stays fresh; an
// outage makes staleness grow from its start.
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
package denylist
