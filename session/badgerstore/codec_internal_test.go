package badgerstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/session"
)

// records are one value of every record type, each field set by fill.
func records(t *testing.T) []any {
	t.Helper()
	var out []any
	for _, p := range []any{&session.Session{}, &session.TokenInfo{}, &session.UserState{}, &session.KeyState{}, &addrRec{}, &accountRec{}} {
		fill(t, reflect.ValueOf(p).Elem(), 1)
		out = append(out, reflect.ValueOf(p).Elem().Interface())
	}
	return out
}

// fill sets every field of v to a value that is not zero and differs
// from field to field, so that a codec that drops, swaps or truncates a
// field (one added to a record type and not to the codec, above all)
// fails the round trip.
func fill(t *testing.T, v reflect.Value, seed int) int {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		seed++
		switch f.Interface().(type) {
		case string:
			s := strings.Repeat(string(rune('a'+seed%26)), seed)
			if strings.Contains(v.Type().Field(i).Name, "Digest") {
				s = strings.Repeat("0123456789abcdef", 4)[seed%4:] + strings.Repeat("e", seed%4) // 64 hex digits
			}
			f.SetString(s)
		case uint64:
			f.SetUint(uint64(seed) << (seed % 50))
		case int:
			f.SetInt(-int64(seed))
		case time.Time:
			f.Set(reflect.ValueOf(time.Date(2026, 11, 30, 12, seed, seed, seed*1000+7, time.UTC)))
		case []time.Time:
			f.Set(reflect.ValueOf([]time.Time{time.Unix(int64(seed), 1).UTC(), time.Unix(-int64(seed), 999_999_999).UTC()}))
		default:
			t.Fatalf("%s.%s: the test does not know %s", v.Type(), v.Type().Field(i).Name, f.Type())
		}
	}
	return seed
}

// Every record type goes through the binary codec unchanged, and its
// JSON form (version 1 views and snapshots) decodes to the same value.
func TestRecordCodecRoundTrip(t *testing.T) {
	for _, r := range records(t) {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= len(j) {
			t.Errorf("%T: binary %d bytes, JSON %d", r, len(b), len(j))
		}
		for name, enc := range map[string][]byte{"binary": b, "JSON": j} {
			p := reflect.New(reflect.TypeOf(r))
			if err := decodeRecord(enc, p.Interface()); err != nil {
				t.Fatalf("%T from %s: %v", r, name, err)
			}
			if got := p.Elem().Interface(); !reflect.DeepEqual(got, r) {
				t.Errorf("%T from %s:\n got %+v\nwant %+v", r, name, got, r)
			}
		}
	}
	// Zero values, and digests that are not 64 lowercase hex digits, too.
	for _, r := range []any{session.Session{}, session.Session{RefreshDigest: strings.Repeat("AB", 32), PreviousDigest: "x"}, accountRec{}} {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		p := reflect.New(reflect.TypeOf(r))
		if err := decodeRecord(b, p.Interface()); err != nil || !reflect.DeepEqual(p.Elem().Interface(), r) {
			t.Errorf("%T: %+v, %v; want %+v", r, p.Elem().Interface(), err, r)
		}
	}
}

// A record cut short, with bytes after it or of an unknown version is
// an error, never a panic or a partly filled value taken as whole.
func TestRecordCodecRefusesDamage(t *testing.T) {
	s := records(t)[0].(session.Session)
	b, err := encodeRecord(s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(b) {
		var got session.Session
		if err := decodeRecord(b[:i], &got); err == nil {
			t.Errorf("cut at %d of %d: no error", i, len(b))
		}
	}
	var got session.Session
	if err := decodeRecord(append(bytes.Clone(b), 0), &got); err == nil {
		t.Error("a byte too many: no error")
	}
	if err := decodeRecord(append([]byte{9}, b[1:]...), &got); err == nil {
		t.Error("unknown version: no error")
	}
	if _, err := encodeRecord(struct{}{}); err == nil {
		t.Error("a type without a codec was encoded")
	}
}

// Whatever the bytes, decoding returns a value or an error.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []any{session.Session{ID: "S1", CreatedAt: time.Unix(1, 2)}, accountRec{Failures: []time.Time{time.Unix(3, 4)}}} {
		b, err := encodeRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []any{&session.Session{}, &session.TokenInfo{}, &session.UserState{}, &session.KeyState{}, &addrRec{}, &accountRec{}} {
			_ = decodeRecord(b, p)
		}
	})
}
