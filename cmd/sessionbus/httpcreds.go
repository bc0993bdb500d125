package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Files in the data dir holding the HTTP bearer credentials that serve
// creates on first start (0600, 256 random bits, base64url): the admin
// API's, and the one /introspect accepts besides it (RFC 7662 §2.1).
const (
	adminTokenFile      = "admin-token"
	introspectTokenFile = "introspect-token"
)

// minCredentialLen is the shortest credential accepted from a file: 128
// bits in base64url.
const minCredentialLen = 22

// httpCredential returns the credential in dataDir/name, creating it
// (256 random bits, base64url, mode 0600) when the file is missing or
// empty. A file others may read, or one too short to be a secret, is an
// error. The credential never appears in an error.
func httpCredential(dataDir, name string) (string, error) {
	path := filepath.Join(dataDir, name)
	tok, err := readCredential(path)
	if err == nil && tok != "" {
		return tok, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok = base64.RawURLEncoding.EncodeToString(b)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	// WriteFile keeps the mode of a file that existed (empty).
	if err := os.Chmod(path, 0o600); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return tok, nil
}

// readCredential reads a credential file written by httpCredential (or by
// the operator): one line, not readable by others.
func readCredential(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("%s is accessible to other users (mode %s): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok != "" && (len(tok) < minCredentialLen || strings.ContainsAny(tok, " \t\r\n")) {
		return "", fmt.Errorf("%s does not hold one credential of at least %d characters", path, minCredentialLen)
	}
	return tok, nil
}
