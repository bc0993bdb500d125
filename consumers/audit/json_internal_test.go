package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzValidJSON holds validJSON to encoding/json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `{"a":1}`, `[1,2,3]`, `"x"`, `-0.5e+10`, `01`, `1.`, `.5`, `-`, `1e`, `true`, `tru`, `nul`, `false `,
		`{"a":}`, `{"a" 1}`, `{,}`, `[1,]`, `[,1]`, `{"a":1,}`, `{"a":1}x`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\x"`, `"\u12G4"`, "\"\x01\"",
		"\"\xff\xfe\"", `{"a":[{"b":null}],"c":{"d":[true,false]}}`, " \t\r\n{ \"a\" : [ 1 , 2 ] } \n", `[[[[[]]]]]`, `{"a":{"b":{}}}`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001), `1 2`, `"a" "b"`, `{"a":1}{}`,
	} {
		f.Add([]byte(s))
	}
	for _, m := range sampleMsgs(f) {
		f.Add(m.Data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	data := sampleMsgs(b)[0].Data
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !validJSON(data) {
			b.Fatal()
		}
	}
}

func BenchmarkJSONValid(b *testing.B) {
	data := sampleMsgs(b)[0].Data
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !json.Valid(data) {
			b.Fatal()
		}
	}
}
