package denylist

import "errors"

var (
	// ErrNotReady reports a deny-list that has not yet caught up with the
	// revocations in force (Run has not reached the stream's end since it
	// started). Check returns it whatever the StalePolicy: a service must
	// never accept a token that was revoked while it was down.
	ErrNotReady = errors.New("denylist: not caught up")
	// ErrStale reports a deny-list that has not heard from the stream for
	// longer than Config.MaxStaleness while the policy is FailClosed.
	ErrStale = errors.New("denylist: stale")
	// ErrInvalidConfig reports a Config that breaks a rule; Validate joins
	// one per problem.
	ErrInvalidConfig = errors.New("denylist: invalid config")
	// ErrExpired reports a revocation whose deny_until (plus Config.Grace)
	// has already passed: it covers no token that could still be valid, so
	// it is not stored.
	ErrExpired = errors.New("denylist: revocation already expired")
	// ErrNotRevocation reports a known fact that is not a revocation.
	ErrNotRevocation = errors.New("denylist: not a revocation")
	// ErrNoJetStream reports a Run without Config.JetStream.
	ErrNoJetStream = errors.New("denylist: no JetStream to follow")
	// ErrAlreadyRunning reports a second Run of the same List.
	ErrAlreadyRunning = errors.New("denylist: already running")
)
