package kvstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

// Bucket names.
const (
	UsersBucket = "sessionbus_users"
	KeysBucket  = "sessionbus_keys"
)

// Config of the buckets.
type Config struct {
	// Replicas of each bucket: 1 embedded, 3 in a cluster (default 1).
	Replicas int
}

// Store is the set of buckets. It implements session.Users and
// session.KeyStore.
type Store struct {
	users, keys jetstream.KeyValue
}

var (
	_ session.Users    = (*Store)(nil)
	_ session.KeyStore = (*Store)(nil)
)

// Open binds the buckets, which Setup created, and returns the store.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	var s Store
	for _, b := range buckets {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", b.name, err)
		}
		switch b.name {
		case UsersBucket:
			s.users = kv
		case KeysBucket:
			s.keys = kv
		}
	}
	return &s, nil
}

// Setup creates the buckets, or updates them to cfg: the setup step, which
// needs the setup role (the manager may not create streams).
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	for _, b := range buckets {
		_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b.name, Description: b.desc, History: b.history, TTL: b.ttl,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", b.name, err)
		}
	}
	return nil
}

var buckets = []struct {
	name, desc string
	history    uint8
	ttl        time.Duration
}{
	{UsersBucket, "sessionbus users and password hashes (managers only)", 5, 0},
	{KeysBucket, "sessionbus signing keys and secrets (managers only)", 5, 0},
}

var enc = base64.RawURLEncoding

func nameKey(normalized string) string { return "name." + enc.EncodeToString([]byte(normalized)) }

// ByName implements session.Users.
func (s *Store) ByName(ctx context.Context, normalized string) (session.User, error) {
	return s.userAt(ctx, nameKey(normalized))
}

func (s *Store) userAt(ctx context.Context, key string) (session.User, error) {
	e, err := s.users.Get(ctx, key)
	if err != nil {
		return session.User{}, notFound(err)
	}
	var u session.User
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return session.User{}, fmt.Errorf("user record: %w", err)
	}
	u.Revision = e.Revision()
	return u, nil
}

// ByID implements session.Users.
func (s *Store) ByID(ctx context.Context, id string) (session.User, error) {
	if !events.ValidID(id) {
		return session.User{}, session.ErrNotFound
	}
	e, err := s.users.Get(ctx, "id."+id)
	if err != nil {
		return session.User{}, notFound(err)
	}
	return s.userAt(ctx, string(e.Value()))
}

// Create implements session.Users: the name key is created atomically, so
// two managers cannot both add the same name.
func (s *Store) Create(ctx context.Context, normalized string, u session.User) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	key := nameKey(normalized)
	if _, err := s.users.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return session.ErrExists
		}
		return fmt.Errorf("create user: %w", err)
	}
	if _, err := s.users.Put(ctx, "id."+u.ID, []byte(key)); err != nil {
		return fmt.Errorf("index user: %w", err)
	}
	return nil
}

// Update implements session.Users: compare-and-set on the record's
// revision, so two concurrent changes cannot undo each other.
func (s *Store) Update(ctx context.Context, u session.User) error {
	e, err := s.users.Get(ctx, "id."+u.ID)
	if err != nil {
		return notFound(err)
	}
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if _, err := s.users.Update(ctx, string(e.Value()), b, u.Revision); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return session.ErrConflict
		}
		return fmt.Errorf("update user: %w", err)
	}
	return nil
}

// List implements session.Users.
func (s *Store) List(ctx context.Context) ([]session.User, error) {
	l, err := s.users.ListKeysFiltered(ctx, "name.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer l.Stop()
	var out []session.User
	for k := range l.Keys() {
		u, err := s.userAt(ctx, k)
		if errors.Is(err, session.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func notFound(err error) error {
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return session.ErrNotFound
	}
	return err
}

// AccountSecret returns the secret that keys login throttling (HMAC of
// the normalised username), creating it on first use.
func (s *Store) AccountSecret(ctx context.Context) ([]byte, error) {
	const key = "secret.account"
	for range 3 {
		e, err := s.keys.Get(ctx, key)
		if err == nil {
			return enc.DecodeString(string(e.Value()))
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("account secret: %w", err)
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if _, err := s.keys.Create(ctx, key, []byte(enc.EncodeToString(b))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("account secret: %w", err)
		}
	}
	return nil, errors.New("account secret: could not create")
}

// Keys implements session.KeyStore.
func (s *Store) Keys(ctx context.Context) (string, []session.SigningKey, error) {
	var active string
	if e, err := s.keys.Get(ctx, "active"); err == nil {
		active = string(e.Value())
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil, fmt.Errorf("active key: %w", err)
	}
	l, err := s.keys.ListKeysFiltered(ctx, "key.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return active, nil, nil
		}
		return "", nil, fmt.Errorf("list keys: %w", err)
	}
	defer l.Stop()
	var keys []session.SigningKey
	for k := range l.Keys() {
		sk, err := s.key(ctx, k)
		if errors.Is(err, session.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		keys = append(keys, sk)
	}
	return active, keys, nil
}

func (s *Store) key(ctx context.Context, key string) (session.SigningKey, error) {
	e, err := s.keys.Get(ctx, key)
	if err != nil {
		return session.SigningKey{}, notFound(err)
	}
	var k session.SigningKey
	if err := json.Unmarshal(e.Value(), &k); err != nil {
		return session.SigningKey{}, fmt.Errorf("key record: %w", err)
	}
	return k, nil
}

func (s *Store) putKey(ctx context.Context, k session.SigningKey) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	_, err = s.keys.Put(ctx, "key."+k.KID, b)
	return err
}

// Activate implements session.KeyStore. The previous key is marked retired
// before the active pointer moves (a crash in between leaves it active),
// and the pointer moves with compare-and-set, so concurrent rotations do
// not both win.
func (s *Store) Activate(ctx context.Context, k session.SigningKey, onlyIfNone bool) (*session.SigningKey, error) {
	cur, err := s.keys.Get(ctx, "active")
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("active key: %w", err)
	}
	if err == nil && onlyIfNone {
		return nil, session.ErrExists
	}
	if err := s.putKey(ctx, k); err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	if cur == nil {
		if _, err := s.keys.Create(ctx, "active", []byte(k.KID)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return nil, session.ErrExists
			}
			return nil, fmt.Errorf("activate key: %w", err)
		}
		return nil, nil
	}
	prev, err := s.key(ctx, "key."+string(cur.Value()))
	if err != nil {
		return nil, fmt.Errorf("previous key: %w", err)
	}
	prev.RetiredAt = k.ActivatedAt
	if err := s.putKey(ctx, prev); err != nil {
		return nil, fmt.Errorf("retire key: %w", err)
	}
	if _, err := s.keys.Update(ctx, "active", []byte(k.KID), cur.Revision()); err != nil {
		return nil, fmt.Errorf("activate key (concurrent rotation?): %w", err)
	}
	return &prev, nil
}

// Revoke implements session.KeyStore.
func (s *Store) Revoke(ctx context.Context, kid string, at time.Time) error {
	if !events.ValidID(kid) {
		return session.ErrNotFound
	}
	k, err := s.key(ctx, "key."+kid)
	if err != nil {
		return err
	}
	if k.RevokedAt.IsZero() {
		k.RevokedAt = at
	}
	return s.putKey(ctx, k)
}

// WatchKeys calls changed once at start and after every change to the
// keys, until ctx ends. The caller reads the keys itself (Keys), so that
// reads made in order are applied in order.
func (s *Store) WatchKeys(ctx context.Context, changed func()) error {
	w, err := s.keys.WatchFiltered(ctx, []string{"active", "key.*"}, jetstream.MetaOnly())
	if err != nil {
		return fmt.Errorf("watch keys: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Updates():
			if !ok {
				return nil
			}
			// Drain a burst of updates, then report once.
			for drained := false; !drained; {
				select {
				case _, ok := <-w.Updates():
					if !ok {
						return nil
					}
				default:
					drained = true
				}
			}
			changed()
		}
	}
}
