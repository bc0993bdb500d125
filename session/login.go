package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

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
	name, ip, err := m.checkLogin(req)
	if err != nil {
		return events.TokenReply{}, "invalid", err
	}
	if err := m.notReady(); err != nil {
		return events.TokenReply{}, "overloaded", err
	}
	if err := m.writeRefused(); err != nil {
		return events.TokenReply{}, "unwritable", err
	}
	acct := m.accountKey(name)
	addr := ThrottleAddr(ip, req.Via)
	acctN, end, err := m.attempts.begin(ctx, acct, addr, m.cfg.HashWait)
	if err != nil {
		m.m.overloaded.Inc()
		return events.TokenReply{}, "overloaded", err
	}
	defer end()
	th, result, err := m.checkThrottle(ctx, acct, addr, acctN)
	if err != nil {
		return events.TokenReply{}, result, err
	}
	user, params, ok, result, err := m.checkCredentials(ctx, name, req.Password)
	if err != nil {
		return events.TokenReply{}, result, err
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
	if result, err := m.endIfChanged(ctx, name, user, reply.SessionID); err != nil {
		return events.TokenReply{}, result, err
	}
	return reply, "ok", nil
}

// checkLogin checks the fields of a login and returns its normalised
// username and address.
func (m *Manager) checkLogin(req LoginRequest) (name, ip string, err error) {
	name, err = m.NormalizeUsername(req.Username)
	if err != nil {
		return "", "", err
	}
	if err := m.checkPassword(req.Password, 1); err != nil {
		return "", "", err
	}
	if err := errors.Join(checkOptional("client_id", req.ClientID, 128), checkOptional("user_agent", req.UserAgent, 512)); err != nil {
		return "", "", err
	}
	ip, err = normalizeIP(req.IP)
	if err != nil {
		return "", "", err
	}
	if req.Via != "" && (req.IP != "" || req.UserAgent != "") {
		return "", "", fmt.Errorf("%w: only a gateway identity may state ip and user_agent", ErrForbidden)
	}
	return name, ip, nil
}

// checkThrottle reads the throttle state of the account and address and
// refuses the attempt (ErrThrottled) while it is throttled. acctN is the
// number of other attempts for the account in flight. It returns the
// state as read, and on error the result to count.
func (m *Manager) checkThrottle(ctx context.Context, acct, ip string, acctN int) (Throttle, string, error) {
	th, err := m.d.View.Throttle(ctx, acct, ip)
	if err != nil {
		return Throttle{}, "error", fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	// Attempts for the account from elsewhere count as failures until
	// they are decided.
	eff, now0 := th, m.now()
	for range acctN {
		eff.AccountFailures = appendRecent(eff.AccountFailures, now0)
	}
	if wait := m.cfg.Throttle.RetryAfter(eff, now0); wait > 0 {
		m.m.throttled.Inc()
		return Throttle{}, "throttled", &RetryError{Err: ErrThrottled, After: wait}
	}
	return th, "", nil
}

// checkCredentials verifies the password within the hash limiter; an
// unknown username costs the same work and gets the same answer. ok
// reports whether the password matches the user as stored after the
// hash, which is the user it returns. On error it also returns the
// result to count.
func (m *Manager) checkCredentials(ctx context.Context, name, password string) (user User, params PasswordParams, ok bool, result string, err error) {
	release, err := m.limiter.acquire(ctx)
	if err != nil {
		m.m.overloaded.Inc()
		return User{}, PasswordParams{}, false, "overloaded", err
	}
	user, uerr := m.d.Users.ByName(ctx, name)
	switch {
	case uerr == nil:
		var verr error
		ok, params, verr = VerifyPassword([]byte(password), user.PasswordHash)
		if verr != nil {
			m.log.Error("unreadable password hash", "user_id", user.ID)
			ok = false
		}
	case errors.Is(uerr, ErrNotFound):
		// Same work as for a real user, same answer.
		_, _, _ = VerifyPassword([]byte(password), m.dummyHash)
	default:
		release()
		return User{}, PasswordParams{}, false, "error", fmt.Errorf("%w: users store: %v", ErrOverloaded, uerr)
	}
	release()

	if ok {
		// The account may have been disabled or given a new password while
		// the hash ran: decide on its state now.
		cur, err := m.d.Users.ByName(ctx, name)
		if err != nil {
			return User{}, PasswordParams{}, false, "error", fmt.Errorf("%w: users store: %v", ErrOverloaded, err)
		}
		ok = subtle.ConstantTimeCompare([]byte(cur.PasswordHash), []byte(user.PasswordHash)) == 1
		user = cur
	}
	return user, params, ok, "", nil
}

// endIfChanged checks the user again after its session sid was started
// for it. A disable or password change that landed while the session was
// being created ends it at once; the result to count and the error are
// then returned.
func (m *Manager) endIfChanged(ctx context.Context, name string, user User, sid string) (string, error) {
	if cur, err := m.d.Users.ByName(ctx, name); err != nil || cur.Disabled || cur.PasswordHash != user.PasswordHash {
		reason := events.ReasonPasswordChanged
		if err == nil && cur.Disabled {
			reason = events.ReasonUserDisabled
		}
		if s, serr := m.session(ctx, sid); serr == nil {
			_ = m.revokeSession(ctx, s, reason, events.System)
		}
		if err != nil {
			return "error", fmt.Errorf("%w: users store: %v", ErrOverloaded, err)
		}
		return "changed", ErrBadCredentials
	}
	return "", nil
}

func (m *Manager) loginFailed(ctx context.Context, reason, userID, acct, ip string, req LoginRequest, th Throttle, now time.Time) error {
	data := events.LoginFailed{
		UserID: userID, AccountKey: acct, Reason: reason, ClientID: req.ClientID,
		IP: ip, UserAgent: req.UserAgent, Via: req.Via, FailedAt: now,
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

func (m *Manager) startSession(ctx context.Context, userID, acct, ip string, req LoginRequest, now time.Time) (events.TokenReply, error) {
	// A login in the second a user revocation rounded up to starts at its
	// revoked_before, so that its tokens are not denied.
	u, err := m.d.View.User(ctx, userID)
	if err != nil {
		return events.TokenReply{}, fmt.Errorf("%w: %w", ErrOverloaded, err)
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
		SessionID: sid, UserID: userID, AccountKey: acct, ClientID: req.ClientID, IP: ip, UserAgent: req.UserAgent, Via: req.Via,
		RefreshDigest: Digest(refresh), Generation: 1, AccessJTI: jti, AccessExpiresAt: exp, KeyID: kid,
		CreatedAt: now, IdleExpiresAt: now.Add(m.cfg.IdleTimeout), ExpiresAt: now.Add(m.cfg.AbsoluteTimeout),
		Actor: holder(ctx, userID),
	}
	seq, err := m.publish(ctx, events.TypeSessionCreated, sid, now, data, &events.Expect{Subject: events.SessionSubjects(sid)})
	if err != nil {
		return events.TokenReply{}, err
	}
	m.settle(ctx, seq)
	return m.reply(access, refresh, sid), nil
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
