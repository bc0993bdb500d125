package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// UserInfo describes a user without the hash.
type UserInfo struct {
	ID        string `json:"id"`
	Username  string `json:"username"`
	Disabled  bool   `json:"disabled"`
	CreatedAt string `json:"created_at"`
}

func (u User) info() UserInfo {
	return UserInfo{ID: u.ID, Username: u.Username, Disabled: u.Disabled, CreatedAt: u.CreatedAt.Format("2006-01-02T15:04:05Z07:00")}
}

// AddUser creates a user with a password of MinPasswordLen to
// MaxPasswordLen bytes. It publishes no fact (users live in the users
// store); the log line names the actor ctx carries. It returns
// ErrInvalidInput or ErrExists.
func (m *Manager) AddUser(ctx context.Context, username, password string) (UserInfo, error) {
	name, err := m.NormalizeUsername(username)
	if err != nil {
		return UserInfo{}, err
	}
	if err := m.checkPassword(password, MinPasswordLen); err != nil {
		return UserInfo{}, err
	}
	h, err := m.hash(ctx, password)
	if err != nil {
		return UserInfo{}, err
	}
	now := m.now().UTC()
	u := User{ID: events.NewID(), Username: username, PasswordHash: h, CreatedAt: now, UpdatedAt: now}
	if err := m.d.Users.Create(ctx, name, u); err != nil {
		if errors.Is(err, ErrExists) {
			msg := fmt.Sprintf("user %q already exists", username)
			if cur, cerr := m.d.Users.ByName(ctx, name); cerr == nil && cur.Username != username {
				msg += fmt.Sprintf(" (as %q)", cur.Username)
			}
			return UserInfo{}, &NamedError{Err: ErrExists, Msg: msg}
		}
		return UserInfo{}, err
	}
	m.log.Info("user added", "user_id", u.ID, "actor", actorOf(ctx).String())
	return u.info(), nil
}

func (m *Manager) hash(ctx context.Context, password string) (string, error) {
	release, err := m.limiter.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword([]byte(password), m.cfg.Password)
}

// FindUser returns a user by id or, failing that, by username. It returns
// ErrNotFound, as a *NamedError ("no such user …").
func (m *Manager) FindUser(ctx context.Context, idOrName string) (User, error) {
	if events.ValidID(idOrName) {
		if u, err := m.d.Users.ByID(ctx, idOrName); err == nil || !errors.Is(err, ErrNotFound) {
			return u, err
		}
	}
	name, err := m.NormalizeUsername(idOrName)
	if err != nil {
		return User{}, notFound("no such user %q", idOrName)
	}
	u, err := m.d.Users.ByName(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return User{}, notFound("no such user %q", idOrName)
	}
	return u, err
}

// LookupUser returns a user, by id or username, without the hash. It
// returns ErrNotFound, as a *NamedError.
func (m *Manager) LookupUser(ctx context.Context, idOrName string) (UserInfo, error) {
	u, err := m.FindUser(ctx, idOrName)
	if err != nil {
		return UserInfo{}, err
	}
	return u.info(), nil
}

// SetPassword replaces a user's password and revokes the user's sessions
// (a password change ends every other session): a user.revoked fact
// naming the actor ctx carries.
func (m *Manager) SetPassword(ctx context.Context, idOrName, password string) error {
	if err := m.checkPassword(password, MinPasswordLen); err != nil {
		return err
	}
	h, err := m.hash(ctx, password)
	if err != nil {
		return err
	}
	u, err := m.updateUser(ctx, idOrName, func(u *User) { u.PasswordHash = h })
	if err != nil {
		return err
	}
	m.log.Info("password changed", "user_id", u.ID, "actor", actorOf(ctx).String())
	return m.RevokeUser(ctx, u.ID, events.ReasonPasswordChanged)
}

// updateUser applies change to the current record with compare-and-set,
// re-reading and re-applying when another change got there first.
func (m *Manager) updateUser(ctx context.Context, idOrName string, change func(*User)) (User, error) {
	for range conflictRetries {
		u, err := m.FindUser(ctx, idOrName)
		if err != nil {
			return User{}, err
		}
		change(&u)
		u.UpdatedAt = m.now().UTC()
		err = m.d.Users.Update(ctx, u)
		if errors.Is(err, ErrConflict) {
			continue
		}
		return u, err
	}
	return User{}, &RetryError{Err: ErrOverloaded, After: time.Second}
}

// SetDisabled disables or enables a user. Disabling revokes every session
// of the user: a user.revoked fact, reason user_disabled, naming the
// actor ctx carries. Enabling publishes no fact; the log line names the
// actor.
func (m *Manager) SetDisabled(ctx context.Context, idOrName string, disabled bool) (UserInfo, error) {
	u, err := m.updateUser(ctx, idOrName, func(u *User) { u.Disabled = disabled })
	if err != nil {
		return UserInfo{}, err
	}
	m.log.Info("user changed", "user_id", u.ID, "disabled", disabled, "actor", actorOf(ctx).String())
	if disabled {
		if err := m.RevokeUser(ctx, u.ID, events.ReasonUserDisabled); err != nil {
			return UserInfo{}, err
		}
	}
	return u.info(), nil
}

// ListUsers returns every user, without hashes.
func (m *Manager) ListUsers(ctx context.Context) ([]UserInfo, error) {
	us, err := m.d.Users.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, 0, len(us))
	for _, u := range us {
		out = append(out, u.info())
	}
	return out, nil
}

// KeyInfo describes a signing key without its private part.
type KeyInfo struct {
	KID         string `json:"kid"`
	Alg         string `json:"alg"`
	Status      string `json:"status"` // active, retired or revoked
	CreatedAt   string `json:"created_at"`
	ActivatedAt string `json:"activated_at,omitempty"`
	RetiredAt   string `json:"retired_at,omitempty"`
	RevokedAt   string `json:"revoked_at,omitempty"`
}

// EnsureKey makes a signing key of the configured algorithm active if
// there is none (first start). Concurrent managers create one key between
// them.
func (m *Manager) EnsureKey(ctx context.Context) error {
	active, _, err := m.d.Keys.Keys(ctx)
	if err != nil {
		return err
	}
	if active != "" {
		return nil
	}
	_, err = m.rotateKey(ctx, "", true)
	if errors.Is(err, ErrExists) {
		return m.reloadKeys(ctx) // another manager made the first key
	}
	return err
}

// RotateKey makes a new key of alg (default: the configured one) active,
// retires the previous one (it stays in the JWKS until no token it signed
// can be valid) and publishes key.rotated naming the actor ctx carries.
// The first key (EnsureKey) is the system's.
func (m *Manager) RotateKey(ctx context.Context, alg string) (KeyInfo, error) {
	return m.rotateKey(ctx, alg, false)
}

func (m *Manager) rotateKey(ctx context.Context, alg string, onlyIfNone bool) (KeyInfo, error) {
	if alg == "" {
		alg = m.cfg.SigningAlg
	}
	k, err := m.d.NewKey(alg)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	now := m.now().UTC()
	k.CreatedAt, k.ActivatedAt = now, now
	prev, err := m.d.Keys.Activate(ctx, k, onlyIfNone)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := m.reloadKeys(ctx); err != nil {
		return KeyInfo{}, err
	}
	data := events.KeyRotated{KeyID: k.KID, Algorithm: k.Alg, ActivatedAt: now, Actor: actorOf(ctx)}
	if onlyIfNone {
		data.Actor = events.System
	}
	if prev != nil {
		retires := now.Add(m.cfg.AccessTTL + m.cfg.ClockLeeway)
		data.PreviousKeyID, data.PreviousRetiresAt = prev.KID, &retires
	}
	seq, err := m.publish(ctx, events.TypeKeyRotated, k.KID, now, data, nil)
	if err != nil {
		return KeyInfo{}, err
	}
	m.settle(ctx, seq)
	return keyInfo(k, k.KID), nil
}

// RevokeKey withdraws a signing key: it leaves the JWKS, and key.revoked
// tells services to deny every token it signed. Revoking the active key
// first rotates to a new key of the same algorithm. The reason is the
// operator's (default key_compromised, see Revoke); both facts name the
// actor ctx carries. It returns ErrInvalidInput or ErrNotFound.
func (m *Manager) RevokeKey(ctx context.Context, kid, reason string) error {
	if !events.ValidID(kid) {
		return fmt.Errorf("%w: bad kid", ErrInvalidInput)
	}
	reason, err := operatorReason(reason, events.ReasonKeyCompromised)
	if err != nil {
		return err
	}
	active, keys, err := m.d.Keys.Keys(ctx)
	if err != nil {
		return err
	}
	var alg string
	for _, k := range keys {
		if k.KID == kid {
			alg = k.Alg
		}
	}
	if alg == "" {
		return notFound("no such signing key %q", kid)
	}
	if kid == active {
		if _, err := m.RotateKey(ctx, alg); err != nil {
			return err
		}
	}
	now := m.now().UTC()
	if err := m.d.Keys.Revoke(ctx, kid, now); err != nil {
		return err
	}
	if err := m.reloadKeys(ctx); err != nil {
		return err
	}
	ks, err := m.d.View.Key(ctx, kid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	data := events.KeyRevoked{KeyID: kid, Reason: reason, RevokedAt: now,
		DenyUntil: maxTime(now.Add(m.cfg.AccessTTL), ks.MaxAccessExp).Add(m.cfg.ClockLeeway), Actor: actorOf(ctx)}
	seq, err := m.publish(ctx, events.TypeKeyRevoked, kid, now, data, nil)
	if err != nil {
		return err
	}
	m.m.revocations.WithLabelValues("key", reasonLabel(reason)).Inc()
	m.settle(ctx, seq)
	return nil
}

// ListKeys describes every stored key.
func (m *Manager) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	active, keys, err := m.d.Keys.Keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyInfo(k, active))
	}
	return out, nil
}

func keyInfo(k SigningKey, active string) KeyInfo {
	f := func(t interface{ IsZero() bool }, s string) string {
		if t.IsZero() {
			return ""
		}
		return s
	}
	const layout = "2006-01-02T15:04:05Z07:00"
	info := KeyInfo{KID: k.KID, Alg: k.Alg, CreatedAt: k.CreatedAt.Format(layout),
		ActivatedAt: f(k.ActivatedAt, k.ActivatedAt.Format(layout)),
		RetiredAt:   f(k.RetiredAt, k.RetiredAt.Format(layout)),
		RevokedAt:   f(k.RevokedAt, k.RevokedAt.Format(layout))}
	switch {
	case !k.RevokedAt.IsZero():
		info.Status = "revoked"
	case k.KID == active:
		info.Status = "active"
	default:
		info.Status = "retired"
	}
	return info
}

func (m *Manager) reloadKeys(ctx context.Context) error {
	if m.d.ReloadKeys == nil {
		return nil
	}
	if err := m.d.ReloadKeys(ctx); err != nil {
		return fmt.Errorf("reload keys: %w", err)
	}
	return nil
}
