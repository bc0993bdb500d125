package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrDuplicateKey reports a JSON object with a key twice, or with two keys
// that differ only in case.
var ErrDuplicateKey = errors.New("duplicate key")

// DecodeStrict decodes b, which must be exactly one JSON value, into v
// like encoding/json with DisallowUnknownFields, and refuses what
// encoding/json would let through: a key twice in one object, or two keys
// of one object that differ only in case (ErrDuplicateKey). encoding/json
// matches keys to fields case-insensitively and keeps the last one, so
// {"username":"a","Username":"b"} decodes as "b" while anything that looked
// at the body before — a proxy, a log, a validator — read "a". Commands
// (NATS) and request bodies (HTTP) are decoded with it.
func DecodeStrict(b []byte, v any) error {
	if err := CheckKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// CheckKeys returns nil if b is exactly one well-formed JSON value in
// which no object, at any depth, has two keys that encoding/json would
// take for the same field (equal under Unicode case folding, as
// strings.EqualFold), and ErrDuplicateKey or a syntax error otherwise.
func CheckKeys(b []byte) error {
	type frame struct {
		keys    map[string]struct{} // folded keys; nil for an array
		wantKey bool
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers are not needed, only stepped over
	var stack []frame
	values := 0
	done := func() { // a value ended
		if len(stack) == 0 {
			values++
		} else if stack[len(stack)-1].keys != nil {
			stack[len(stack)-1].wantKey = true
		}
	}
	for {
		if values > 0 && len(stack) == 0 {
			if _, err := dec.Token(); err != io.EOF {
				return errors.New("trailing data after the JSON value")
			}
			return nil
		}
		tok, err := dec.Token()
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				done()
				continue
			}
			key, ok := tok.(string)
			if !ok { // the decoder does not let this happen
				return fmt.Errorf("object key is %T", tok)
			}
			f := foldKey(key)
			if _, dup := stack[n-1].keys[f]; dup {
				return fmt.Errorf("%w %q", ErrDuplicateKey, shorten(key))
			}
			stack[n-1].keys[f] = struct{}{}
			stack[n-1].wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]struct{}{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
		default:
			done()
		}
	}
}

// foldKey maps every rune of s to the smallest rune of its case-folding
// orbit (unicode.SimpleFold), so that foldKey(a) == foldKey(b) exactly when
// strings.EqualFold(a, b): the equality encoding/json matches names by.
func foldKey(s string) string {
	var sb strings.Builder
	sb.Grow(len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			sb.WriteByte(byte(r))
			continue
		}
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		sb.WriteRune(min)
	}
	return sb.String()
}

// shorten keeps an echoed key short: it is the sender's own input, but
// has no business filling an error message.
func shorten(s string) string {
	if len(s) <= 40 {
		return s
	}
	return strings.ToValidUTF8(s[:40], "") + "…"
}
