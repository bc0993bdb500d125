package snapstore

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// What is read through a readAhead is what its reader holds, however
// the reads are cut; a reader stopped early and closed never hangs.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i * 13)
	}
	for _, size := range []int{1, 7, 4096, 1 << 20} {
		ra := newReadAhead(iotest.HalfReader(bytes.NewReader(data)), size, 3)
		got, err := io.ReadAll(iotest.OneByteReader(ra))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("pieces of %d: read %d bytes (%v), want %d", size, len(got), err, len(data))
		}
		ra.wait()
	}
	for range 20 {
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write(data) }()
		ra := newReadAhead(pr, 100, 2)
		if _, err := io.ReadFull(ra, make([]byte, 150)); err != nil {
			t.Fatal(err)
		}
		pr.Close()
		ra.wait()
	}
	ra := newReadAhead(iotest.ErrReader(io.ErrClosedPipe), 10, 2)
	if _, err := ra.Read(make([]byte, 5)); err != io.ErrClosedPipe {
		t.Fatalf("read: %v, want the reader's error", err)
	}
	ra.wait()
}
