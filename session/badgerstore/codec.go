package badgerstore

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/session"
)

// Records are stored in a compact binary form: the byte recordV1, then
// the fields of the record in the order encodeRecord writes them
// (unsigned integers as uvarints, signed ones as varints, strings with
// their uvarint length, times as a byte 0 for the zero time or 1 and
// the Unix seconds (varint) and nanoseconds (uvarint), refresh-token
// digests as 32 bytes when they are 64 lowercase hex digits). Views
// written before FormatVersion 2 hold JSON records, which start with
// '{', and are still read; the next write of such a record is binary.
//
// Decoding and encoding JSON was a fifth of a refresh's CPU, and the
// records are two to three times larger in JSON, which every compaction
// of the view rewrites.
const recordV1 = 1

var errNoCodec = errors.New("no record codec for this type")

// encodeRecord encodes a view record.
func encodeRecord(v any) ([]byte, error) {
	var e enc
	e.b = make([]byte, 1, 192)
	e.b[0] = recordV1
	switch r := v.(type) {
	case session.Session:
		e.str(r.ID)
		e.str(r.UserID)
		e.str(r.AccountKey)
		e.str(r.ClientID)
		e.str(r.IP)
		e.str(r.UserAgent)
		e.uint(r.Generation)
		e.digest(r.RefreshDigest)
		e.digest(r.PreviousDigest)
		e.time(r.RotatedAt)
		e.time(r.CreatedAt)
		e.time(r.LastRefreshedAt)
		e.time(r.IdleExpiresAt)
		e.time(r.ExpiresAt)
		e.time(r.MaxAccessExp)
		e.time(r.RevokedAt)
		e.str(r.RevokeReason)
		e.uint(r.LastSeq)
	case session.TokenInfo:
		e.str(r.JTI)
		e.str(r.SessionID)
		e.str(r.UserID)
		e.str(r.KeyID)
		e.time(r.ExpiresAt)
		e.time(r.RevokedAt)
	case session.UserState:
		e.time(r.RevokedBefore)
		e.time(r.MaxAccessExp)
	case session.KeyState:
		e.time(r.RevokedAt)
		e.time(r.MaxAccessExp)
	case addrRec:
		e.int(int64(r.Failures))
		e.time(r.LastFailureAt)
		e.time(r.KnownAt)
	case accountRec:
		e.uint(uint64(len(r.Failures)))
		for _, t := range r.Failures {
			e.time(t)
		}
	default:
		return nil, fmt.Errorf("%w: %T", errNoCodec, v)
	}
	return e.b, nil
}

// decodeRecord decodes a view record into v, a pointer to one of the
// types encodeRecord takes: binary, or JSON as earlier versions wrote
// it. Input that does not decode, or has bytes left over, is an error.
func decodeRecord(b []byte, v any) error {
	if len(b) > 0 && b[0] == '{' {
		return json.Unmarshal(b, v)
	}
	if len(b) == 0 || b[0] != recordV1 {
		return errors.New("not a record of a known version")
	}
	d := dec{b: b[1:]}
	switch r := v.(type) {
	case *session.Session:
		*r = session.Session{
			ID: d.str(), UserID: d.str(), AccountKey: d.str(), ClientID: d.str(), IP: d.str(), UserAgent: d.str(),
			Generation: d.uint(), RefreshDigest: d.digest(), PreviousDigest: d.digest(),
			RotatedAt: d.time(), CreatedAt: d.time(), LastRefreshedAt: d.time(), IdleExpiresAt: d.time(),
			ExpiresAt: d.time(), MaxAccessExp: d.time(), RevokedAt: d.time(), RevokeReason: d.str(), LastSeq: d.uint(),
		}
	case *session.TokenInfo:
		*r = session.TokenInfo{JTI: d.str(), SessionID: d.str(), UserID: d.str(), KeyID: d.str(), ExpiresAt: d.time(), RevokedAt: d.time()}
	case *session.UserState:
		*r = session.UserState{RevokedBefore: d.time(), MaxAccessExp: d.time()}
	case *session.KeyState:
		*r = session.KeyState{RevokedAt: d.time(), MaxAccessExp: d.time()}
	case *addrRec:
		*r = addrRec{Failures: int(d.int()), LastFailureAt: d.time(), KnownAt: d.time()}
	case *accountRec:
		n := d.uint()
		if n > uint64(len(d.b)) { // a time takes a byte at least
			return errors.New("too many failure times")
		}
		*r = accountRec{}
		if n > 0 {
			r.Failures = make([]time.Time, n)
		}
		for i := range r.Failures {
			r.Failures[i] = d.time()
		}
	default:
		return fmt.Errorf("%w: %T", errNoCodec, v)
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the record", len(d.b))
	}
	return d.err
}

type enc struct{ b []byte }

func (e *enc) uint(x uint64) { e.b = binary.AppendUvarint(e.b, x) }
func (e *enc) int(x int64)   { e.b = binary.AppendVarint(e.b, x) }

func (e *enc) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.int(t.Unix())
	e.uint(uint64(t.Nanosecond()))
}

// digest packs a SHA-256 in lowercase hex (what session.Digest makes)
// into its 32 bytes; anything else is kept as it is.
func (e *enc) digest(s string) {
	if len(s) == 64 && isLowerHex(s) {
		e.b = append(e.b, 1)
		e.b, _ = hex.AppendDecode(e.b, []byte(s)) // checked: lowercase hex
		return
	}
	e.b = append(e.b, 0)
	e.str(s)
}

func isLowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// dec reads what enc wrote; after the first error it reads zero values
// and keeps the error.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("record cut short or damaged at a %s", what)
	}
	d.b = nil
}

func (d *dec) uint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *dec) int() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *dec) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("string")
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *dec) str() string { return string(d.bytes(d.uint())) }

func (d *dec) tag() byte {
	b := d.bytes(1)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func (d *dec) time() time.Time {
	switch d.tag() {
	case 0:
		return time.Time{}
	case 1:
		sec, nsec := d.int(), d.uint()
		if nsec >= 1e9 {
			d.fail("time")
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	}
	d.fail("time")
	return time.Time{}
}

func (d *dec) digest() string {
	switch d.tag() {
	case 0:
		return d.str()
	case 1:
		return hex.EncodeToString(d.bytes(32))
	}
	d.fail("digest")
	return ""
}
