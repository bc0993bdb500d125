package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id parameters. They are stored with each hash
// in the PHC string format ($argon2id$v=19$m=…,t=…,p=…$salt$hash).
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultPasswordParams are OWASP's minimum for argon2id: 19 MiB, two
// passes, one thread.
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Validate refuses parameters below OWASP's minimum or absurdly high.
func (p PasswordParams) Validate() error {
	var errs []error
	if p.Memory < 19*1024 || p.Memory > 4*1024*1024 {
		errs = append(errs, fmt.Errorf("argon2 memory %d KiB not in 19456..4194304", p.Memory))
	}
	if p.Time < 2 || p.Time > 100 {
		errs = append(errs, fmt.Errorf("argon2 time %d not in 2..100", p.Time))
	}
	if p.Threads < 1 {
		errs = append(errs, errors.New("argon2 threads must be at least 1"))
	}
	if p.SaltLen < 16 || p.SaltLen > 64 || p.KeyLen < 32 || p.KeyLen > 64 {
		errs = append(errs, errors.New("argon2 salt must be 16..64 bytes and key 32..64 bytes"))
	}
	return errors.Join(errs...)
}

// errBadHash reports a stored hash that cannot be parsed.
var errBadHash = errors.New("stored password hash is not argon2id PHC")

var b64 = base64.RawStdEncoding

// HashPassword returns the PHC string of password under p.
func HashPassword(password []byte, p PasswordParams) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches the PHC string encoded,
// comparing in constant time, and returns the parameters of the hash.
func VerifyPassword(password []byte, encoded string) (bool, PasswordParams, error) {
	p, salt, key, err := parsePHC(encoded)
	if err != nil {
		return false, p, err
	}
	got := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, p, nil
}

func parsePHC(s string) (p PasswordParams, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var m, t, th uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return p, nil, nil, errBadHash
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		default:
			return p, nil, nil, errBadHash
		}
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return p, nil, nil, errBadHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return p, nil, nil, errBadHash
	}
	p = PasswordParams{Memory: uint32(m), Time: uint32(t), Threads: uint8(th), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if m == 0 || m > 4*1024*1024 || t == 0 || t > 100 || th == 0 || th > 255 || len(key) < 16 || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// hashLimiter bounds concurrent password hashing: each argon2id hash takes
// ~Memory KiB, so an unbounded login storm would exhaust memory.
type hashLimiter struct {
	slots   chan struct{}
	waiting atomic.Int64
	queue   int64
	wait    time.Duration
}

func newHashLimiter(n, queue int, wait time.Duration) *hashLimiter {
	return &hashLimiter{slots: make(chan struct{}, n), queue: int64(queue), wait: wait}
}

// acquire takes a slot, waiting at most l.wait with at most l.queue others.
// It returns ErrOverloaded (as *RetryError) when the bound is reached.
func (l *hashLimiter) acquire(ctx context.Context) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	default:
	}
	if l.waiting.Add(1) > l.queue {
		l.waiting.Add(-1)
		return nil, &RetryError{Err: ErrOverloaded, After: time.Second}
	}
	defer l.waiting.Add(-1)
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	case <-t.C:
		return nil, &RetryError{Err: ErrOverloaded, After: time.Second}
	case <-ctx.Done():
		return nil, &RetryError{Err: ErrOverloaded, After: time.Second}
	}
}

func (l *hashLimiter) release() { <-l.slots }

// inFlight is the number of hashes being computed.
func (l *hashLimiter) inFlight() int { return len(l.slots) }
