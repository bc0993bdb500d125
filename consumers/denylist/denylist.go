package denylist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config.
const (
	DefaultLookback      = 15 * time.Minute
	DefaultMaxTokenTTL   = 5 * time.Minute
	DefaultGrace         = time.Minute
	DefaultMaxStaleness  = 30 * time.Second
	DefaultHeartbeat     = time.Second
	DefaultSweepInterval = 10 * time.Second
)

// StalePolicy says what Check answers once the list is older than
// Config.MaxStaleness.
type StalePolicy int

const (
	// FailClosed (the default) makes Check return ErrStale: the
	// middleware refuses every request (503) until the list hears from
	// the stream again. A revoked token is never accepted because of an
	// outage, at the price of availability during one.
	FailClosed StalePolicy = iota
	// FailOpen keeps serving with the last known list: during an outage a
	// token revoked meanwhile stays usable until it expires (at most the
	// access-token lifetime). Check still returns ErrNotReady before the
	// first catch-up.
	FailOpen
)

func (p StalePolicy) String() string {
	switch p {
	case FailClosed:
		return "fail-closed"
	case FailOpen:
		return "fail-open"
	}
	return fmt.Sprintf("StalePolicy(%d)", int(p))
}

// Config configures a List. The zero value of every field but JetStream
// is a usable default.
type Config struct {
	// JetStream is where AUTH_EVENTS lives. Required by Run; a List
	// without it can only be fed with Apply.
	JetStream jetstream.JetStream
	// Lookback is how far back Run replays revocations on start (default
	// 15m). It must be at least MaxTokenTTL: every revocation still in
	// force was published less than one access-token lifetime ago.
	Lookback time.Duration
	// MaxTokenTTL is the longest access-token lifetime the manager issues
	// (default 5m, the manager's --access-ttl default).
	MaxTokenTTL time.Duration
	// Grace is how long an entry is kept after its deny_until (default
	// 1m). It covers clock skew between the manager and this service and
	// the verifiers' leeway on exp, and must be at least that leeway.
	Grace time.Duration
	// MaxStaleness bounds how long the list may go without hearing from
	// the stream before StalePolicy applies (default 30s).
	MaxStaleness time.Duration
	// StalePolicy is what Check answers when the list is stale (default
	// FailClosed).
	StalePolicy StalePolicy
	// Heartbeat is how often the stored revocations are read, which is
	// the freshness probe (default 1s, 500ms to 15s). A quiet stream is
	// fresh as long as the reads succeed.
	Heartbeat time.Duration
	// SweepInterval is how often entries past their deny_until plus Grace
	// are dropped (default 10s).
	SweepInterval time.Duration
	// Logger receives the list's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// TracerProvider makes the spans of applied revocations (default:
	// the global provider, a no-op unless the program set one).
	TracerProvider trace.TracerProvider
	// Now is the clock of staleness and expiry (default time.Now);
	// tests move it instead of sleeping.
	Now func() time.Time
}

// TracerName names the tracer of this package's spans.
const TracerName = "github.com/sessionbus/sessionbus/consumers/denylist"

func (c Config) withDefaults() Config {
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.MaxTokenTTL == 0 {
		c.MaxTokenTTL = DefaultMaxTokenTTL
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem with c (after defaults), each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	if c.MaxTokenTTL < 0 {
		bad("negative max token TTL %s", c.MaxTokenTTL)
	}
	if c.Lookback < c.MaxTokenTTL {
		bad("lookback %s is shorter than the longest access-token lifetime %s: revocations in force would not be replayed", c.Lookback, c.MaxTokenTTL)
	}
	if c.Grace < 0 {
		bad("negative grace %s", c.Grace)
	}
	if c.MaxStaleness < 2*c.Heartbeat {
		bad("max staleness %s is less than two heartbeats (%s)", c.MaxStaleness, 2*c.Heartbeat)
	}
	if c.StalePolicy != FailClosed && c.StalePolicy != FailOpen {
		bad("unknown stale policy %d", int(c.StalePolicy))
	}
	if c.Heartbeat < 500*time.Millisecond || c.Heartbeat > 15*time.Second {
		bad("heartbeat %s not within 500ms..15s", c.Heartbeat)
	}
	if c.SweepInterval < 0 {
		bad("negative sweep interval %s", c.SweepInterval)
	}
	return errors.Join(errs...)
}

// Kind names what denied a token.
type Kind uint8

// The four kinds of entries, and KindNone for a token that is not denied.
const (
	KindNone    Kind = iota
	KindSession      // the token's session (sid) was revoked
	KindToken        // the token itself (jti) was revoked
	KindUser         // the user (sub) was revoked after the token or its session began
	KindKey          // the signing key (kid) was withdrawn
)

// Kinds lists the four kinds of entries.
func Kinds() []Kind { return []Kind{KindSession, KindToken, KindUser, KindKey} }

func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindSession:
		return "session"
	case KindToken:
		return "token"
	case KindUser:
		return "user"
	case KindKey:
		return "key"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Token is what Denied needs of a verified access token.
type Token struct {
	SessionID string    // sid claim
	ID        string    // jti claim
	Subject   string    // sub claim: the user id
	KeyID     string    // kid header
	IssuedAt  time.Time // iat claim
	AuthTime  time.Time // auth_time claim: when the session began
}

// List is a deny-list of revoked sessions, tokens, users and signing keys,
// fed from the revocation facts of AUTH_EVENTS. Lookups are safe for
// concurrent use with Run and Apply.
type List struct {
	cfg    Config
	log    *slog.Logger
	tables [KindKey + 1]store
	m      *metrics
	tracer trace.Tracer
	epoch  time.Time // monotonic base of freshAt
	// realClock: Config.Now was not set, so Staleness reads only the
	// monotonic clock (time.Since), which costs a fraction of time.Now
	// on every request.
	realClock bool
	running   atomic.Bool

	ready     chan struct{}
	readyOnce sync.Once
	isReady   atomic.Bool
	// freshAt is the last moment (ns since epoch, +1 so 0 means never) at
	// which the list was known to hold every revocation on the stream.
	freshAt atomic.Int64
	lastSeq atomic.Uint64 // AUTH_EVENTS sequence of the last revocation read

	// Owned by Run's goroutine.
	runStart time.Time
	readSeq  uint64 // the last AUTH_REVOCATIONS sequence read
}

// New returns a List. It returns ErrInvalidConfig when cfg is invalid, or
// the error of registering the metrics.
func New(cfg Config) (*List, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	realClock := cfg.Now == nil
	cfg = cfg.withDefaults()
	l := &List{
		cfg:       cfg,
		realClock: realClock,
		log:       cfg.Logger.With("component", "denylist"),
		tracer:    cfg.TracerProvider.Tracer(TracerName),
		epoch:     cfg.Now(),
		ready:     make(chan struct{}),
	}
	l.tables[KindSession] = newTable()
	l.tables[KindToken] = newTable()
	l.tables[KindUser] = newTable()
	l.tables[KindKey] = newKeyTable()
	m, err := newMetrics(l, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	l.m = m
	return l, nil
}

// Config returns the configuration in effect, defaults filled in.
func (l *List) Config() Config { return l.cfg }

// Denied reports whether tok is denied and by which kind of entry. It
// checks the signing key, the session, the token and the user; a user entry
// denies a token whose iat or auth_time is before its revoked_before, and
// any token of that user lacking iat or auth_time. An entry denies until
// it is swept, a little after its deny_until, by which time every token it
// covers has expired anyway.
func (l *List) Denied(tok Token) (bool, Kind) {
	if _, ok := l.tables[KindKey].get(tok.KeyID); ok {
		return true, KindKey
	}
	if _, ok := l.tables[KindSession].get(tok.SessionID); ok {
		return true, KindSession
	}
	if _, ok := l.tables[KindToken].get(tok.ID); ok {
		return true, KindToken
	}
	if e, ok := l.tables[KindUser].get(tok.Subject); ok {
		if tok.IssuedAt.IsZero() || tok.AuthTime.IsZero() ||
			tok.IssuedAt.UnixNano() < e.before || tok.AuthTime.UnixNano() < e.before {
			return true, KindUser
		}
	}
	return false, KindNone
}

// Len returns the number of entries of kind k.
func (l *List) Len(k Kind) int {
	if k < KindSession || k > KindKey {
		return 0
	}
	return l.tables[k].len()
}

// Ready is closed once Run has caught up with the stream: every revocation
// that was on the stream when Run started (within Lookback) is applied.
func (l *List) Ready() <-chan struct{} { return l.ready }

// WaitReady waits until the list is ready or ctx ends (returning
// ctx.Err()).
func (l *List) WaitReady(ctx context.Context) error {
	select {
	case <-l.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Staleness is how long ago the list was last known to hold every
// revocation on the stream: the last message that left nothing pending, or
// the last successful probe (every Heartbeat) that found nothing pending.
// It is math.MaxInt64 before the first catch-up.
func (l *List) Staleness() time.Duration {
	f := l.freshAt.Load()
	if f == 0 {
		return math.MaxInt64
	}
	since := time.Since(l.epoch)
	if !l.realClock {
		since = l.cfg.Now().Sub(l.epoch)
	}
	return max(since-time.Duration(f-1), 0)
}

// Check tells whether the list may be relied on now. It returns
// ErrNotReady before the first catch-up, ErrStale when the list is older
// than MaxStaleness and the policy is FailClosed, and nil otherwise.
func (l *List) Check() error {
	if !l.isReady.Load() {
		return ErrNotReady
	}
	if l.cfg.StalePolicy == FailClosed && l.Staleness() > l.cfg.MaxStaleness {
		return ErrStale
	}
	return nil
}

// LastSequence is the AUTH_EVENTS sequence of the last revocation read
// from the stream.
func (l *List) LastSequence() uint64 { return l.lastSeq.Load() }

func (l *List) markFresh(t time.Time) {
	v := int64(t.Sub(l.epoch)) + 1
	for {
		old := l.freshAt.Load()
		if v <= old || l.freshAt.CompareAndSwap(old, v) {
			return
		}
	}
}

func (l *List) markReady() {
	l.readyOnce.Do(func() {
		l.isReady.Store(true)
		close(l.ready)
		l.log.Info("deny-list caught up",
			"sessions", l.Len(KindSession), "tokens", l.Len(KindToken),
			"users", l.Len(KindUser), "keys", l.Len(KindKey), "last_seq", l.lastSeq.Load())
	})
}

// sweep drops entries whose deny_until plus Grace has passed.
func (l *List) sweep(now time.Time) {
	n := now.UnixNano()
	total := 0
	for _, k := range Kinds() {
		total += l.tables[k].sweep(n)
	}
	if total > 0 {
		l.log.Debug("swept expired entries", "count", total)
	}
}
