package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/text/secure/precis"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
)

// Deps are the parts a Manager works with.
type Deps struct {
	View      View
	Publisher Publisher
	Users     Users
	Tokens    Tokens
	Keys      KeyStore
	NewKey    KeyGenerator
	Grace     GraceStore
	// ReloadKeys, if set, makes Tokens take the key store's current keys;
	// the manager calls it after rotating or revoking a key so that its
	// own next token uses the new key at once (other managers follow the
	// key store's changes on their own).
	ReloadKeys func(ctx context.Context) error
	// Ready, if set, reports whether the view has caught up with the
	// stream; until it has, commands that read the view answer
	// ErrOverloaded rather than decide from an old state.
	Ready func() bool
	// AccountSecret keys the account digests of login throttling; shared
	// by all managers, never published.
	AccountSecret []byte
	// Logger (nil discards) and Registerer (nil: no metrics registered).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager runs the session flows. It is safe for concurrent use.
type Manager struct {
	attempts  attempts
	barrier   barrier
	cfg       Config
	d         Deps
	source    string
	log       *slog.Logger
	limiter   *hashLimiter
	dummyHash string
	m         *metrics
	now       func() time.Time
}

// New returns a Manager. It computes a dummy password hash with the
// configured parameters, used for unknown usernames so that their timing
// matches a real user's.
func New(cfg Config, d Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	var missing []string
	for name, ok := range map[string]bool{
		"View": d.View != nil, "Publisher": d.Publisher != nil, "Users": d.Users != nil,
		"Tokens": d.Tokens != nil, "Keys": d.Keys != nil, "NewKey": d.NewKey != nil, "Grace": d.Grace != nil,
		"AccountSecret": len(d.AccountSecret) >= 16,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("session: missing dependencies: %s", strings.Join(missing, ", "))
	}
	m := &Manager{cfg: cfg, d: d, source: events.Source(cfg.Instance), log: d.Logger, now: d.Now}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.limiter = newHashLimiter(cfg.MaxConcurrentHashes, cfg.HashQueue, cfg.HashWait)
	m.m = newMetrics(d.Registerer, func() float64 { return float64(m.limiter.inFlight()) })
	dummy := make([]byte, 32)
	if _, err := rand.Read(dummy); err != nil {
		return nil, err
	}
	h, err := HashPassword(dummy, cfg.Password)
	if err != nil {
		return nil, err
	}
	m.dummyHash = h
	return m, nil
}

// notReady refuses a command while the view is catching up.
func (m *Manager) notReady() error {
	if m.d.Ready != nil && !m.d.Ready() {
		return &RetryError{Err: fmt.Errorf("%w: catching up with the event stream", ErrOverloaded), After: time.Second}
	}
	return nil
}

// attempts keeps the logins this manager has in flight. Their failures
// reach the view only after the hash, so a burst of concurrent attempts
// would all pass the throttle. Attempts for one account from one address
// therefore take turns (each then sees the failures of the one before),
// and attempts for one account from other addresses count as failures of
// the account until they are decided.
type attempts struct {
	mu   sync.Mutex
	acct map[string]int
	turn map[string]chan struct{} // closed when the attempt in turn ends
}

// begin waits for the turn of (acct, ip), at most wait, and returns how
// many other attempts for the account are in flight; end ends the turn.
func (a *attempts) begin(ctx context.Context, acct, ip string, wait time.Duration) (acctN int, end func(), err error) {
	k := acct + "|" + ip
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		a.mu.Lock()
		if a.acct == nil {
			a.acct, a.turn = map[string]int{}, map[string]chan struct{}{}
		}
		busy, ok := a.turn[k]
		if !ok {
			done := make(chan struct{})
			a.turn[k] = done
			acctN = a.acct[acct]
			a.acct[acct]++
			a.mu.Unlock()
			return acctN, func() {
				a.mu.Lock()
				defer a.mu.Unlock()
				delete(a.turn, k)
				if a.acct[acct]--; a.acct[acct] == 0 {
					delete(a.acct, acct)
				}
				close(done)
			}, nil
		}
		a.mu.Unlock()
		select {
		case <-busy:
		case <-t.C:
			return 0, nil, &RetryError{Err: ErrOverloaded, After: time.Second}
		case <-ctx.Done():
			return 0, nil, &RetryError{Err: ErrOverloaded, After: time.Second}
		}
	}
}

// barrier shares the read of the stream's last sequence between requests:
// a request may use a read that started after it arrived, never one that
// started before (that read might miss a write acknowledged in between).
// So at most one read is in flight, however many unknown tokens arrive.
type barrier struct {
	mu  sync.Mutex
	cur *barrierRead
}

type barrierRead struct {
	started time.Time
	done    chan struct{}
	seq     uint64
	err     error
}

func (b *barrier) lastSeq(ctx context.Context, read func(context.Context) (uint64, error)) (uint64, error) {
	arrived := time.Now()
	for {
		b.mu.Lock()
		r := b.cur
		if r == nil {
			r = &barrierRead{started: time.Now(), done: make(chan struct{})}
			b.cur = r
			b.mu.Unlock()
			r.seq, r.err = read(ctx)
			b.mu.Lock()
			b.cur = nil
			b.mu.Unlock()
			close(r.done)
			return r.seq, r.err
		}
		b.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if !r.started.Before(arrived) {
			return r.seq, r.err
		}
	}
}

// ---- input checks ----

// NormalizeUsername applies the PRECIS UsernameCaseMapped profile (RFC
// 8265): names are compared case-insensitively after Unicode
// normalisation. It returns ErrInvalidInput for an empty, oversized or
// disallowed name.
func (m *Manager) NormalizeUsername(name string) (string, error) {
	if name == "" || len(name) > m.cfg.MaxUsernameLen {
		return "", fmt.Errorf("%w: username must be 1 to %d bytes", ErrInvalidInput, m.cfg.MaxUsernameLen)
	}
	n, err := precis.UsernameCaseMapped.String(name)
	if err != nil || n == "" || len(n) > m.cfg.MaxUsernameLen {
		return "", fmt.Errorf("%w: username has characters that are not allowed", ErrInvalidInput)
	}
	return n, nil
}

func (m *Manager) checkPassword(pw string, minLen int) error {
	if len(pw) < minLen || len(pw) > m.cfg.MaxPasswordLen {
		return fmt.Errorf("%w: password must be %d to %d bytes", ErrInvalidInput, minLen, m.cfg.MaxPasswordLen)
	}
	return nil
}

// MinPasswordLen is the shortest password a user may be given (NIST SP
// 800-63B).
const MinPasswordLen = 8

func checkOptional(name, v string, maxLen int) error {
	if len(v) > maxLen || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: %s must be printable UTF-8 of at most %d bytes", ErrInvalidInput, name, maxLen)
	}
	return nil
}

func normalizeIP(ip string) (string, error) {
	if ip == "" {
		return "", nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("%w: ip is not an IP address", ErrInvalidInput)
	}
	return a.Unmap().String(), nil
}

// accountKey is the keyed digest of a normalised username that throttling
// and the facts use instead of the name.
func (m *Manager) accountKey(normalized string) string {
	mac := hmac.New(sha256.New, m.d.AccountSecret)
	mac.Write([]byte(normalized))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// RefreshTokenPrefix starts every refresh token, so that secret scanners
// and the APIs can tell it from an access token.
const RefreshTokenPrefix = "sbr_"

func newRefreshToken() (string, error) {
	b := make([]byte, 32) // 256 bits
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return RefreshTokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// IsRefreshToken reports whether t has the shape of a refresh token.
func IsRefreshToken(t string) bool {
	return len(t) == len(RefreshTokenPrefix)+43 && strings.HasPrefix(t, RefreshTokenPrefix)
}

// Digest is the hex SHA-256 of a refresh token: the only form in which
// it is stored or published.
func Digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ---- publishing ----

func (m *Manager) publish(ctx context.Context, t events.Type, id string, at time.Time, data any, expect *jsbus.Expect) (uint64, error) {
	e, err := events.New(t, m.source, id, at, data)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	seq, err := m.d.Publisher.Publish(ctx, e, expect)
	m.m.publishTime.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, jsbus.ErrConflict) {
			m.m.conflicts.Inc()
			return 0, err
		}
		m.log.Error("publish failed", "type", t, "err", err)
		return 0, fmt.Errorf("%w: event stream unavailable", ErrOverloaded)
	}
	return seq, nil
}

// settle waits until the view has applied seq, so that the caller's next
// request sees it. The fact is already durable: a timeout here is logged,
// not returned.
func (m *Manager) settle(ctx context.Context, seq uint64) {
	if err := m.d.View.WaitApplied(ctx, seq); err != nil {
		m.log.Warn("view lags behind the stream", "seq", seq, "err", err)
	}
}

// caughtUp makes the view apply everything the stream acknowledged before
// now. A manager calls it before answering "unknown" for a token or id
// that another manager may have just created.
func (m *Manager) caughtUp(ctx context.Context) error {
	seq, err := m.barrier.lastSeq(ctx, m.d.Publisher.LastSeq)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	if err := m.d.View.WaitApplied(ctx, seq); err != nil {
		return fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	return nil
}

// sessionByDigest is View.SessionByDigest with a read barrier on a miss.
func (m *Manager) sessionByDigest(ctx context.Context, digest string) (Session, uint64, error) {
	s, gen, err := m.d.View.SessionByDigest(ctx, digest)
	if !errors.Is(err, ErrNotFound) {
		return s, gen, err
	}
	if err := m.caughtUp(ctx); err != nil {
		return Session{}, 0, err
	}
	return m.d.View.SessionByDigest(ctx, digest)
}

// session is View.Session with a read barrier on a miss.
func (m *Manager) session(ctx context.Context, id string) (Session, error) {
	s, err := m.d.View.Session(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		return s, err
	}
	if err := m.caughtUp(ctx); err != nil {
		return Session{}, err
	}
	return m.d.View.Session(ctx, id)
}

// token is View.Token with a read barrier on a miss.
func (m *Manager) token(ctx context.Context, jti string) (TokenInfo, error) {
	t, err := m.d.View.Token(ctx, jti)
	if !errors.Is(err, ErrNotFound) {
		return t, err
	}
	if err := m.caughtUp(ctx); err != nil {
		return TokenInfo{}, err
	}
	return m.d.View.Token(ctx, jti)
}

// conflictRetries bounds how often one request re-decides after losing a
// conditional write.
const conflictRetries = 8

// reread waits for the view to catch up with the write that beat us.
func (m *Manager) reread(ctx context.Context, err error) error {
	var ce *jsbus.ConflictError
	if errors.As(err, &ce) {
		if werr := m.d.View.WaitApplied(ctx, ce.LastSeq); werr != nil {
			return fmt.Errorf("%w: %v", ErrOverloaded, werr)
		}
	}
	return nil
}

// ---- login ----

// LoginRequest is a login with the caller's context.
type LoginRequest = events.LoginRequest

// Login checks credentials and starts a session. It returns
// ErrInvalidInput, ErrBadCredentials (unknown user and wrong password
// alike), ErrDisabled, ErrThrottled or ErrOverloaded (as *RetryError).
func (m *Manager) Login(ctx context.Context, req LoginRequest) (events.TokenReply, error) {
	reply, result, err := m.login(ctx, req)
	m.m.logins.WithLabelValues(result).Inc()
	return reply, err
}

func (m *Manager) login(ctx context.Context, req LoginRequest) (events.TokenReply, string, error) {
	name, err := m.NormalizeUsername(req.Username)
	if err != nil {
		return events.TokenReply{}, "invalid", err
	}
	if err := m.checkPassword(req.Password, 1); err != nil {
		return events.TokenReply{}, "invalid", err
	}
	if err := errors.Join(checkOptional("client_id", req.ClientID, 128), checkOptional("user_agent", req.UserAgent, 512)); err != nil {
		return events.TokenReply{}, "invalid", err
	}
	ip, err := normalizeIP(req.IP)
	if err != nil {
		return events.TokenReply{}, "invalid", err
	}
	if err := m.notReady(); err != nil {
		return events.TokenReply{}, "overloaded", err
	}
	acct := m.accountKey(name)
	acctN, end, err := m.attempts.begin(ctx, acct, ip, m.cfg.HashWait)
	if err != nil {
		m.m.overloaded.Inc()
		return events.TokenReply{}, "overloaded", err
	}
	defer end()
	th, err := m.d.View.Throttle(ctx, acct, ip)
	if err != nil {
		return events.TokenReply{}, "error", fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	// Attempts for the account from elsewhere count as failures until
	// they are decided.
	eff, now0 := th, m.now()
	for range acctN {
		eff.AccountFailures = appendRecent(eff.AccountFailures, now0)
	}
	if wait := m.cfg.Throttle.RetryAfter(eff, now0); wait > 0 {
		m.m.throttled.Inc()
		return events.TokenReply{}, "throttled", &RetryError{Err: ErrThrottled, After: wait}
	}

	release, err := m.limiter.acquire(ctx)
	if err != nil {
		m.m.overloaded.Inc()
		return events.TokenReply{}, "overloaded", err
	}
	user, uerr := m.d.Users.ByName(ctx, name)
	var ok bool
	var params PasswordParams
	switch {
	case uerr == nil:
		ok, params, err = VerifyPassword([]byte(req.Password), user.PasswordHash)
		if err != nil {
			m.log.Error("unreadable password hash", "user_id", user.ID)
			ok = false
		}
	case errors.Is(uerr, ErrNotFound):
		// Same work as for a real user, same answer.
		_, _, _ = VerifyPassword([]byte(req.Password), m.dummyHash)
	default:
		release()
		return events.TokenReply{}, "error", fmt.Errorf("%w: users store: %v", ErrOverloaded, uerr)
	}
	release()

	if ok {
		// The account may have been disabled or given a new password while
		// the hash ran: decide on its state now.
		cur, err := m.d.Users.ByName(ctx, name)
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: users store: %v", ErrOverloaded, err)
		}
		ok = subtle.ConstantTimeCompare([]byte(cur.PasswordHash), []byte(user.PasswordHash)) == 1
		user = cur
	}
	now := m.now().UTC()
	if !ok {
		if err := m.loginFailed(ctx, events.FailBadCredentials, user.ID, acct, ip, req, th, now); err != nil {
			return events.TokenReply{}, "error", err
		}
		return events.TokenReply{}, "bad_credentials", ErrBadCredentials
	}
	if user.Disabled {
		if err := m.loginFailed(ctx, events.FailDisabled, user.ID, acct, ip, req, th, now); err != nil {
			return events.TokenReply{}, "error", err
		}
		return events.TokenReply{}, "disabled", ErrDisabled
	}
	if params != m.cfg.Password {
		user = m.rehash(ctx, user, req.Password)
	}
	reply, err := m.startSession(ctx, user.ID, acct, ip, req, now)
	if err != nil {
		return events.TokenReply{}, "error", err
	}
	// A disable or password change that landed while the session was
	// being created ends it at once.
	if cur, err := m.d.Users.ByName(ctx, name); err != nil || cur.Disabled || cur.PasswordHash != user.PasswordHash {
		reason := events.ReasonPasswordChanged
		if err == nil && cur.Disabled {
			reason = events.ReasonUserDisabled
		}
		if s, serr := m.session(ctx, reply.SessionID); serr == nil {
			_ = m.revokeSession(ctx, s, reason)
		}
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: users store: %v", ErrOverloaded, err)
		}
		return events.TokenReply{}, "changed", ErrBadCredentials
	}
	return reply, "ok", nil
}

func (m *Manager) loginFailed(ctx context.Context, reason, userID, acct, ip string, req LoginRequest, th Throttle, now time.Time) error {
	data := events.LoginFailed{
		UserID: userID, AccountKey: acct, Reason: reason, ClientID: req.ClientID,
		IP: ip, UserAgent: req.UserAgent, FailedAt: now,
	}
	if until, starts := m.cfg.Throttle.StartsThrottle(th, now); starts && reason == events.FailBadCredentials {
		data.ThrottledUntil = &until
		if th.Failures+1 == m.cfg.Throttle.PerAddress {
			data.Reason = events.FailLocked
		}
	}
	subjectID := userID
	if subjectID == "" {
		subjectID = events.UnknownUser
	}
	seq, err := m.publish(ctx, events.TypeLoginFailed, subjectID, now, data, nil)
	if err != nil {
		return err
	}
	m.settle(ctx, seq)
	return nil
}

// rehash upgrades a hash made with older parameters and returns the user
// as stored; failure only delays the upgrade to the next login.
func (m *Manager) rehash(ctx context.Context, u User, password string) User {
	release, err := m.limiter.acquire(ctx)
	if err != nil {
		return u
	}
	h, err := HashPassword([]byte(password), m.cfg.Password)
	release()
	if err != nil {
		return u
	}
	next := u
	next.PasswordHash = h
	next.UpdatedAt = m.now().UTC()
	// Compare-and-set: a disable or password change since the read wins.
	if err := m.d.Users.Update(ctx, next); err != nil {
		m.log.Warn("password rehash not stored", "user_id", u.ID, "err", err)
		return u
	}
	return next
}

func (m *Manager) issueAccess(userID, sid, clientID string, authTime, now time.Time) (token, jti, kid string, exp time.Time, err error) {
	jti = events.NewID()
	exp = now.Add(m.cfg.AccessTTL)
	token, kid, err = m.d.Tokens.Issue(AccessClaims{
		Issuer: m.cfg.Issuer, Subject: userID, Audience: m.cfg.Audience, SessionID: sid, JTI: jti,
		ClientID: clientID, IssuedAt: now, NotBefore: now, ExpiresAt: exp, AuthTime: authTime,
	})
	if err != nil {
		return "", "", "", time.Time{}, fmt.Errorf("%w: issue token: %v", ErrOverloaded, err)
	}
	return token, jti, kid, exp, nil
}

func (m *Manager) startSession(ctx context.Context, userID, acct, ip string, req LoginRequest, now time.Time) (events.TokenReply, error) {
	// A login in the second a user revocation rounded up to starts at its
	// revoked_before, so that its tokens are not denied.
	u, err := m.d.View.User(ctx, userID)
	if err != nil {
		return events.TokenReply{}, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	if now.Before(u.RevokedBefore) {
		now = u.RevokedBefore
	}
	sid := events.NewID()
	refresh, err := newRefreshToken()
	if err != nil {
		return events.TokenReply{}, err
	}
	access, jti, kid, exp, err := m.issueAccess(userID, sid, req.ClientID, now, now)
	if err != nil {
		return events.TokenReply{}, err
	}
	data := events.SessionCreated{
		SessionID: sid, UserID: userID, AccountKey: acct, ClientID: req.ClientID, IP: ip, UserAgent: req.UserAgent,
		RefreshDigest: Digest(refresh), Generation: 1, AccessJTI: jti, AccessExpiresAt: exp, KeyID: kid,
		CreatedAt: now, IdleExpiresAt: now.Add(m.cfg.IdleTimeout), ExpiresAt: now.Add(m.cfg.AbsoluteTimeout),
	}
	seq, err := m.publish(ctx, events.TypeSessionCreated, sid, now, data, &jsbus.Expect{Subject: events.SessionSubjects(sid)})
	if err != nil {
		return events.TokenReply{}, err
	}
	m.settle(ctx, seq)
	return m.reply(access, refresh, sid), nil
}

func (m *Manager) reply(access, refresh, sid string) events.TokenReply {
	return events.TokenReply{
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int(m.cfg.AccessTTL / time.Second), SessionID: sid,
	}
}

// ---- refresh ----

// Refresh exchanges a refresh token for a new access token and, with
// rotation on, a new refresh token. A refresh token that was already
// rotated revokes its session (refresh_reuse), except: within
// RefreshGrace of its rotation it gets the same successor again, and a
// request that arrived before the rotation was decided (a concurrent
// duplicate) gets ErrConflict. It returns ErrInvalidToken, ErrConflict or
// ErrOverloaded.
func (m *Manager) Refresh(ctx context.Context, token string) (events.TokenReply, error) {
	reply, result, err := m.refresh(ctx, token)
	m.m.refreshes.WithLabelValues(result).Inc()
	return reply, err
}

func (m *Manager) refresh(ctx context.Context, token string) (events.TokenReply, string, error) {
	arrived := m.now()
	if token == "" {
		return events.TokenReply{}, "invalid", fmt.Errorf("%w: refresh_token is required", ErrInvalidInput)
	}
	if !IsRefreshToken(token) {
		return events.TokenReply{}, "invalid", ErrInvalidToken
	}
	if err := m.notReady(); err != nil {
		return events.TokenReply{}, "overloaded", err
	}
	digest := Digest(token)
	raced := false // this request saw its token current and lost the write
	for range conflictRetries {
		s, gen, err := m.sessionByDigest(ctx, digest)
		if errors.Is(err, ErrNotFound) {
			return events.TokenReply{}, "invalid", ErrInvalidToken
		}
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		now := m.now().UTC()
		u, err := m.d.View.User(ctx, s.UserID)
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		switch s.Status(now, u.RevokedBefore) {
		case StatusRevoked:
			return events.TokenReply{}, "revoked", ErrInvalidToken
		case StatusExpired:
			if err := m.revokeSession(ctx, s, s.expiryReason(now)); err != nil {
				m.log.Warn("ending expired session", "session_id", s.ID, "err", err)
			}
			return events.TokenReply{}, "expired", ErrInvalidToken
		}
		if gen < s.Generation {
			successor := gen+1 == s.Generation && s.PreviousDigest == digest
			if successor && m.cfg.RefreshGrace > 0 && now.Sub(s.RotatedAt) <= m.cfg.RefreshGrace {
				r, err := m.graceReply(ctx, token, digest)
				if err != nil {
					return events.TokenReply{}, "error", err
				}
				return r, "grace", nil
			}
			// A request that raced the rotation (it saw the token current,
			// or arrived before the rotation was stored) is a duplicate,
			// not a reuse.
			if successor && (raced || arrived.Before(s.RotatedAt)) {
				return events.TokenReply{}, "conflict", ErrConflict
			}
			m.log.Warn("refresh token reuse: revoking session", "session_id", s.ID, "user_id", s.UserID)
			if err := m.revokeSession(ctx, s, events.ReasonRefreshReuse); err != nil {
				return events.TokenReply{}, "error", err
			}
			return events.TokenReply{}, "reuse", ErrInvalidToken
		}
		reply, err := m.rotate(ctx, s, token, digest, now)
		if errors.Is(err, jsbus.ErrConflict) {
			raced = true
			if err := m.reread(ctx, err); err != nil {
				return events.TokenReply{}, "error", err
			}
			continue
		}
		if err != nil {
			return events.TokenReply{}, "error", err
		}
		return reply, "ok", nil
	}
	return events.TokenReply{}, "contended", &RetryError{Err: ErrOverloaded, After: time.Second}
}

func (m *Manager) rotate(ctx context.Context, s Session, token, digest string, now time.Time) (events.TokenReply, error) {
	next := token
	if m.cfg.RefreshRotation {
		var err error
		if next, err = newRefreshToken(); err != nil {
			return events.TokenReply{}, err
		}
	}
	access, jti, kid, exp, err := m.issueAccess(s.UserID, s.ID, s.ClientID, s.CreatedAt, now)
	if err != nil {
		return events.TokenReply{}, err
	}
	data := events.SessionRefreshed{
		SessionID: s.ID, UserID: s.UserID, Generation: s.Generation + 1,
		PreviousRefreshDigest: digest, RefreshDigest: Digest(next),
		AccessJTI: jti, AccessExpiresAt: exp, KeyID: kid, RefreshedAt: now,
		IdleExpiresAt: minTime(now.Add(m.cfg.IdleTimeout), s.ExpiresAt),
	}
	seq, err := m.publish(ctx, events.TypeSessionRefreshed, s.ID, now, data,
		&jsbus.Expect{Subject: events.SessionSubjects(s.ID), LastSeq: s.LastSeq})
	if err != nil {
		return events.TokenReply{}, err
	}
	reply := m.reply(access, next, s.ID)
	if m.cfg.RefreshRotation && m.cfg.RefreshGrace > 0 {
		sealed, err := sealGrace(token, reply)
		if err == nil {
			err = m.d.Grace.Put(ctx, digest, sealed)
		}
		if err != nil {
			m.log.Warn("grace reply not stored", "session_id", s.ID, "err", err)
		}
	}
	m.settle(ctx, seq)
	return reply, nil
}

// graceReply fetches the successor that the rotating request stored; it
// may arrive a little after the rotation is visible in the view.
func (m *Manager) graceReply(ctx context.Context, token, digest string) (events.TokenReply, error) {
	wait := 2 * time.Millisecond
	deadline := time.Now().Add(2 * time.Second)
	for {
		sealed, err := m.d.Grace.Get(ctx, digest)
		if err == nil {
			r, err := openGrace(token, sealed)
			if err != nil {
				return events.TokenReply{}, fmt.Errorf("%w: grace reply: %v", ErrOverloaded, err)
			}
			return r, nil
		}
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			return events.TokenReply{}, &RetryError{Err: ErrOverloaded, After: time.Second}
		}
		select {
		case <-ctx.Done():
			return events.TokenReply{}, &RetryError{Err: ErrOverloaded, After: time.Second}
		case <-time.After(wait):
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ---- revocation ----

// revokeSession publishes session.revoked for s, conditional on the
// session's last sequence, re-reading after a lost race. Revoking a
// revoked session does nothing.
func (m *Manager) revokeSession(ctx context.Context, s Session, reason string) error {
	for attempt := range conflictRetries {
		if !s.RevokedAt.IsZero() {
			return nil
		}
		now := m.now().UTC()
		// The latest access token's expiry, plus one lifetime in case a
		// refresh lands unseen (see the last attempt below).
		data := events.SessionRevoked{
			SessionID: s.ID, UserID: s.UserID, Reason: reason, RevokedAt: now,
			DenyUntil: maxTime(now, s.MaxAccessExp).Add(m.cfg.ClockLeeway),
		}
		expect := &jsbus.Expect{Subject: events.SessionSubjects(s.ID), LastSeq: s.LastSeq}
		if attempt == conflictRetries-1 {
			// Still losing: revoke unconditionally. A revocation only
			// moves the session forward, so it needs no expectation; its
			// deny_until then covers any token issued meanwhile.
			expect = nil
			data.DenyUntil = maxTime(now.Add(m.cfg.AccessTTL), s.MaxAccessExp).Add(m.cfg.ClockLeeway)
		}
		seq, err := m.publish(ctx, events.TypeSessionRevoked, s.ID, now, data, expect)
		if errors.Is(err, jsbus.ErrConflict) {
			if err := m.reread(ctx, err); err != nil {
				return err
			}
			if s, err = m.d.View.Session(ctx, s.ID); err != nil {
				return fmt.Errorf("%w: %v", ErrOverloaded, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		m.m.revocations.WithLabelValues("session", reason).Inc()
		m.settle(ctx, seq)
		return nil
	}
	return &RetryError{Err: ErrOverloaded, After: time.Second}
}

// RevokeRequest is an admin revocation.
type RevokeRequest = events.RevokeRequest

// Revoke revokes a session, every session of a user, or one access token
// (by jti). It returns ErrInvalidInput (not exactly one target, bad id or
// reason) or ErrNotFound (no such session or token).
func (m *Manager) Revoke(ctx context.Context, req RevokeRequest) error {
	if err := m.notReady(); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{req.SessionID, req.UserID, req.JTI} {
		if v != "" {
			n++
			if !events.ValidID(v) {
				return fmt.Errorf("%w: ids are 1 to 128 characters of [A-Za-z0-9_-]", ErrInvalidInput)
			}
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: give exactly one of session_id, user_id and jti", ErrInvalidInput)
	}
	reason := req.Reason
	if reason == "" {
		reason = events.ReasonAdmin
	}
	if !events.ValidReason(reason) {
		return fmt.Errorf("%w: reason must be 1 to 64 characters of [a-z0-9_], starting with a letter", ErrInvalidInput)
	}
	switch {
	case req.SessionID != "":
		s, err := m.session(ctx, req.SessionID)
		if err != nil {
			return err
		}
		return m.revokeSession(ctx, s, reason)
	case req.UserID != "":
		if _, err := m.d.Users.ByID(ctx, req.UserID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return err
			}
			return fmt.Errorf("%w: users store: %v", ErrOverloaded, err)
		}
		return m.RevokeUser(ctx, req.UserID, reason)
	default:
		t, err := m.token(ctx, req.JTI)
		if err != nil {
			return err
		}
		return m.revokeToken(ctx, t, reason)
	}
}

// RevokeUser revokes every session of a user that started before now and
// every access token issued before now.
func (m *Manager) RevokeUser(ctx context.Context, userID, reason string) error {
	if !events.ValidID(userID) {
		return fmt.Errorf("%w: bad user id", ErrInvalidInput)
	}
	u, err := m.d.View.User(ctx, userID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	now := m.now().UTC()
	// Token times are whole seconds (iat, auth_time): round up, so that a
	// token issued in the same second as the revocation is denied too.
	before := now.Truncate(time.Second)
	if before.Before(now) {
		before = before.Add(time.Second)
	}
	data := events.UserRevoked{
		UserID: userID, Reason: reason, RevokedBefore: before,
		DenyUntil: maxTime(now.Add(m.cfg.AccessTTL), u.MaxAccessExp).Add(m.cfg.ClockLeeway),
	}
	seq, err := m.publish(ctx, events.TypeUserRevoked, userID, now, data, nil)
	if err != nil {
		return err
	}
	m.m.revocations.WithLabelValues("user", reason).Inc()
	m.settle(ctx, seq)
	return nil
}

func (m *Manager) revokeToken(ctx context.Context, t TokenInfo, reason string) error {
	now := m.now().UTC()
	if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt.Add(m.cfg.ClockLeeway)) {
		return nil // already revoked, or expired: nothing left to deny
	}
	data := events.TokenRevoked{
		JTI: t.JTI, SessionID: t.SessionID, UserID: t.UserID, Reason: reason, RevokedAt: now,
		DenyUntil: t.ExpiresAt.Add(m.cfg.ClockLeeway),
	}
	seq, err := m.publish(ctx, events.TypeTokenRevoked, t.JTI, now, data, nil)
	if err != nil {
		return err
	}
	m.m.revocations.WithLabelValues("token", reason).Inc()
	m.settle(ctx, seq)
	return nil
}

// LogoutRequest names the session to end by one of its tokens.
type LogoutRequest = events.LogoutRequest

// Logout ends the session of a refresh token or of an access token. It is
// idempotent: logging out of an ended session succeeds. It returns
// ErrInvalidInput or ErrInvalidToken.
func (m *Manager) Logout(ctx context.Context, req LogoutRequest) error {
	if err := m.notReady(); err != nil {
		return err
	}
	switch {
	case req.RefreshToken != "" && req.AccessToken != "":
		return fmt.Errorf("%w: give one of refresh_token and access_token", ErrInvalidInput)
	case req.RefreshToken != "":
		if !IsRefreshToken(req.RefreshToken) {
			return ErrInvalidToken
		}
		s, _, err := m.sessionByDigest(ctx, Digest(req.RefreshToken))
		if errors.Is(err, ErrNotFound) {
			return ErrInvalidToken
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		return m.revokeSession(ctx, s, events.ReasonLogout)
	case req.AccessToken != "":
		c, err := m.d.Tokens.Verify(req.AccessToken)
		if err != nil {
			return ErrInvalidToken
		}
		s, err := m.session(ctx, c.SessionID)
		if errors.Is(err, ErrNotFound) {
			return ErrInvalidToken
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		return m.revokeSession(ctx, s, events.ReasonLogout)
	}
	return fmt.Errorf("%w: give refresh_token or access_token", ErrInvalidInput)
}

// RevokeToken implements RFC 7009 for the holder of a token: a refresh
// token ends its session, an access token is revoked alone. Tokens that
// are invalid, expired or unknown are ignored (RFC 7009 §2.2); only
// ErrOverloaded is returned.
func (m *Manager) RevokeToken(ctx context.Context, token, hint string) error {
	if err := m.notReady(); err != nil {
		return err
	}
	if IsRefreshToken(token) {
		s, _, err := m.sessionByDigest(ctx, Digest(token))
		if err != nil {
			return ignoreNotFound(err)
		}
		return m.revokeSession(ctx, s, events.ReasonTokenRevocation)
	}
	c, err := m.d.Tokens.Verify(token)
	if err != nil {
		return nil
	}
	t, err := m.token(ctx, c.JTI)
	if errors.Is(err, ErrNotFound) {
		t = TokenInfo{JTI: c.JTI, SessionID: c.SessionID, UserID: c.Subject, KeyID: c.KeyID, ExpiresAt: c.ExpiresAt}
	} else if err != nil {
		return fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	return m.revokeToken(ctx, t, events.ReasonTokenRevocation)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrOverloaded, err)
}

// ---- introspection ----

// Introspection is the RFC 7662 answer. Inactive tokens carry nothing
// else.
type Introspection struct {
	Active    bool     `json:"active"`
	TokenType string   `json:"token_type,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	SessionID string   `json:"sid,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	NotBefore int64    `json:"nbf,omitempty"`
	AuthTime  int64    `json:"auth_time,omitempty"`
}

// Introspect tells whether a token is active now: signed by a current
// key, unexpired, and neither it, its session, its user (before the
// token's session started) nor its key revoked. It returns an error only
// when the view cannot be read.
func (m *Manager) Introspect(ctx context.Context, token string) (Introspection, error) {
	if err := m.notReady(); err != nil {
		return Introspection{}, err
	}
	now := m.now()
	if IsRefreshToken(token) {
		s, gen, err := m.sessionByDigest(ctx, Digest(token))
		if err != nil {
			return Introspection{}, ignoreNotFound(err)
		}
		u, err := m.d.View.User(ctx, s.UserID)
		if err != nil {
			return Introspection{}, fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		if gen != s.Generation || s.Status(now, u.RevokedBefore) != StatusActive {
			return Introspection{}, nil
		}
		return Introspection{Active: true, TokenType: "refresh_token", Subject: s.UserID, SessionID: s.ID,
			ClientID: s.ClientID, Issuer: m.cfg.Issuer, ExpiresAt: minTime(s.IdleExpiresAt, s.ExpiresAt).Unix(),
			IssuedAt: maxTime(s.CreatedAt, s.RotatedAt).Unix(), AuthTime: s.CreatedAt.Unix()}, nil
	}
	c, err := m.d.Tokens.Verify(token)
	if err != nil {
		return Introspection{}, nil
	}
	denied, err := m.denied(ctx, c)
	if err != nil || denied {
		return Introspection{}, err
	}
	return Introspection{Active: true, TokenType: "access_token", Subject: c.Subject, SessionID: c.SessionID,
		JTI: c.JTI, ClientID: c.ClientID, Issuer: c.Issuer, Audience: c.Audience, ExpiresAt: c.ExpiresAt.Unix(),
		IssuedAt: c.IssuedAt.Unix(), NotBefore: c.NotBefore.Unix(), AuthTime: c.AuthTime.Unix()}, nil
}

// denied checks a verified access token against the view's revocations.
func (m *Manager) denied(ctx context.Context, c AccessClaims) (bool, error) {
	s, err := m.session(ctx, c.SessionID)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	if !s.RevokedAt.IsZero() || s.UserID != c.Subject {
		return true, nil
	}
	u, err := m.d.View.User(ctx, c.Subject)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	if !u.RevokedBefore.IsZero() && (c.IssuedAt.Before(u.RevokedBefore) || s.CreatedAt.Before(u.RevokedBefore)) {
		return true, nil
	}
	if t, err := m.d.View.Token(ctx, c.JTI); err == nil && !t.RevokedAt.IsZero() {
		return true, nil
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	k, err := m.d.View.Key(ctx, c.KeyID)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	return !k.RevokedAt.IsZero(), nil
}

// ---- listing and timeouts ----

// Sessions lists a user's sessions that have not reached their absolute
// expiry, newest first. No secrets.
func (m *Manager) Sessions(ctx context.Context, userID string) ([]events.SessionInfo, error) {
	if !events.ValidID(userID) {
		return nil, fmt.Errorf("%w: bad user id", ErrInvalidInput)
	}
	if err := m.notReady(); err != nil {
		return nil, err
	}
	ss, err := m.d.View.UserSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	u, err := m.d.View.User(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOverloaded, err)
	}
	now := m.now()
	out := make([]events.SessionInfo, 0, len(ss))
	for i := len(ss) - 1; i >= 0; i-- { // ids are ULIDs: reverse is newest first
		out = append(out, ss[i].Info(now, u.RevokedBefore))
	}
	return out, nil
}

// Sweep ends, with a session.revoked fact, the sessions whose idle or
// absolute timeout has passed. It returns how many it ended. Several
// managers may sweep at once: the conditional write lets one win.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	due, err := m.d.View.DueSessions(ctx, m.now(), 256)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, s := range due {
		if reason := s.expiryReason(m.now()); reason != "" {
			if err := m.revokeSession(ctx, s, reason); err != nil {
				errs = append(errs, fmt.Errorf("session %s: %w", s.ID, err))
				continue // one stuck session must not hold up the others
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// RunSweeper sweeps every SweepInterval until ctx ends.
func (m *Manager) RunSweeper(ctx context.Context) error {
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := m.Sweep(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				m.log.Warn("sweep failed", "err", err)
			} else if n > 0 {
				m.log.Info("ended timed-out sessions", "count", n)
			}
		}
	}
}

// JWKS returns the public keys as a JWK Set.
func (m *Manager) JWKS() []byte { return m.d.Tokens.JWKS() }
