package badgerstore

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
	"testing/iotest"
)

// The lag hasher's sum is that of all but the last sha256.Size bytes,
// however the reads cut the input.
func TestLagHasher(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, n := range []int{0, 1, 31, 32, 33, 64, 65, 1000} {
		want := sha256.Sum256(data[:max(n-sha256.Size, 0)])
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(data[:n]),
			"one byte": iotest.OneByteReader(bytes.NewReader(data[:n])),
			"half":     iotest.HalfReader(bytes.NewReader(data[:n])),
		} {
			l := newLagHasher(r)
			if _, err := io.Copy(io.Discard, struct{ io.Reader }{l}); err != nil {
				t.Fatal(err)
			}
			if got := l.sum(); !bytes.Equal(got, want[:]) {
				t.Errorf("%d bytes read %s: sum %x, want %x", n, name, got, want)
			}
		}
	}
}
