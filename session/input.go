package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

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
