package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/events"
)

func TestDecodeStrict(t *testing.T) {
	type login = events.LoginRequest
	for _, tc := range []struct {
		name string
		in   string
		want login // when ok
		dup  bool  // refused as ErrDuplicateKey
		ok   bool
	}{
		{name: "plain", in: `{"username":"a","password":"p"}`, want: login{Username: "a", Password: "p"}, ok: true},
		{name: "whitespace around", in: " \n{\"username\":\"a\"}\t\n", want: login{Username: "a"}, ok: true},
		{name: "field in another case, once", in: `{"UserName":"a"}`, want: login{Username: "a"}, ok: true},
		{name: "same key twice", in: `{"username":"a","username":"b"}`, dup: true},
		{name: "case variant", in: `{"username":"a","Username":"b"}`, dup: true},
		{name: "upper-case variant", in: `{"password":"x","username":"a","USERNAME":"b"}`, dup: true},
		{name: "escaped variant", in: `{"username":"a","user\u006eame":"b"}`, dup: true},
		{name: "escaped case variant", in: `{"username":"a","\u0055sername":"b"}`, dup: true},
		{name: "Kelvin sign folds to k", in: `{"kid":"a","\u212aid":"b"}`, dup: true},
		{name: "long s folds to s", in: `{"ip":"a","user_agent":"x","u\u017fer_agent":"y"}`, dup: true},
		{name: "duplicate of an unknown key", in: `{"username":"a","x":1,"X":2}`, dup: true},
		{name: "duplicate in a nested object", in: `{"username":"a","client_id":{"a":1,"A":2}}`, dup: true},
		{name: "duplicate in an object in an array", in: `[{"a":1},{"b":1,"b":2}]`, dup: true},
		{name: "same key in sibling objects", in: `{"username":"a","client_id":[{"k":1},{"k":2}]}`},
		{name: "unknown field", in: `{"username":"a","admin":true}`},
		{name: "trailing value", in: `{"username":"a"} {"username":"b"}`},
		{name: "trailing bracket", in: `{"username":"a"}]`},
		{name: "trailing garbage", in: `{"username":"a"}x`},
		{name: "empty", in: ``},
		{name: "only whitespace", in: "  "},
		{name: "truncated", in: `{"username":"a"`},
		{name: "missing colon", in: `{"username" "a"}`},
		{name: "number key", in: `{1:"a"}`},
		{name: "wrong type", in: `{"username":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got login
			err := events.DecodeStrict([]byte(tc.in), &got)
			if tc.ok {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, decoded as %+v", got)
			}
			if errors.Is(err, events.ErrDuplicateKey) != tc.dup {
				t.Errorf("error %v, duplicate %v", err, tc.dup)
			}
			// A refused body is refused before anything is decoded.
			if got != (login{}) && tc.dup {
				t.Errorf("decoded %+v from a refused body", got)
			}
		})
	}
}

// Without the check, encoding/json takes the last of two case-variant
// keys: the gap DecodeStrict closes.
func TestDecodeStrictClosesTheGap(t *testing.T) {
	in := []byte(`{"username":"alice","Username":"mallory"}`)
	var plain events.LoginRequest
	if err := json.Unmarshal(in, &plain); err != nil || plain.Username != "mallory" {
		t.Fatalf("encoding/json no longer keeps the last case variant (%+v, %v): revisit DecodeStrict's doc", plain, err)
	}
	if err := events.DecodeStrict(in, &plain); !errors.Is(err, events.ErrDuplicateKey) {
		t.Fatalf("DecodeStrict: %v", err)
	}
}

func TestCheckKeysDeep(t *testing.T) {
	deep := strings.Repeat(`{"a":[`, 500) + "1" + strings.Repeat(`]}`, 500)
	if err := events.CheckKeys([]byte(deep)); err != nil {
		t.Fatalf("500 levels: %v", err)
	}
	deepDup := strings.Repeat(`{"a":[`, 500) + `{"x":1,"X":2}` + strings.Repeat(`]}`, 500)
	if err := events.CheckKeys([]byte(deepDup)); !errors.Is(err, events.ErrDuplicateKey) {
		t.Fatalf("duplicate 500 levels down: %v", err)
	}
	// Many distinct keys cost a map insert each, not a comparison with
	// every other key.
	var b bytes.Buffer
	b.WriteString("{")
	for i := range 5000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":0`)
	}
	b.WriteString("}")
	if err := events.CheckKeys(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// duplicateOracle reports, independently of CheckKeys (recursive, and
// comparing every pair of keys with strings.EqualFold), whether any
// object in the valid JSON b has two keys equal under case folding.
func duplicateOracle(t *testing.T, b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("oracle on valid JSON: %v", err)
		}
		switch tok {
		case json.Delim('{'):
			var keys []string
			dup := false
			for dec.More() {
				k, _ := dec.Token()
				for _, prev := range keys {
					dup = dup || strings.EqualFold(prev, k.(string))
				}
				keys = append(keys, k.(string))
				dup = walk() || dup
			}
			_, _ = dec.Token()
			return dup
		case json.Delim('['):
			dup := false
			for dec.More() {
				dup = walk() || dup
			}
			_, _ = dec.Token()
			return dup
		}
		return false
	}
	return walk()
}

// FuzzDecodeStrict: DecodeStrict accepts exactly the single JSON values
// that encoding/json accepts and that have no key twice under case
// folding (by the oracle above), and then decodes them as encoding/json
// does.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"username":"a","password":"p"}`, `{"username":"a","Username":"b"}`, `{"a":{"b":1,"B":2}}`,
		`[{"k":1},{"K":1}]`, `{"\u212a":1,"k":2}`, `{"ſ":1,"S":2}`, `{"a":1}{"a":1}`, `{"a":1}]`, `"x"`, `1 2`,
		`{"é":1,"É":2}`, `{"ǅ":1,"ǆ":2}`, `{"\ud800":1,"\udc00":2}`, "{\"\xff\":1,\"\xfe\":2}", `[]`, `{}`, ` `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var strict any
		err := events.DecodeStrict(b, &strict)
		var plain any
		plainErr := json.Unmarshal(b, &plain)
		if plainErr != nil {
			if err == nil {
				t.Fatalf("accepted what encoding/json refuses (%v): %q", plainErr, b)
			}
			return
		}
		dup := duplicateOracle(t, b)
		switch {
		case dup && err == nil:
			t.Fatalf("accepted keys equal under case folding: %q", b)
		case !dup && err != nil:
			t.Fatalf("refused %q: %v", b, err)
		case err == nil && !reflect.DeepEqual(strict, plain):
			t.Fatalf("decoded %v, encoding/json %v", strict, plain)
		case dup && !errors.Is(err, events.ErrDuplicateKey):
			t.Fatalf("duplicate refused as %v", err)
		}
		if err == nil {
			if _, tokErr := json.NewDecoder(bytes.NewReader(b)).Token(); tokErr == io.EOF {
				t.Fatalf("accepted an empty body")
			}
		}
	})
}
