package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Fixed parts of a line's tail.
const (
	prevHashKey  = `,"prevhash":"`
	chainHashKey = `,"chainhash":"`
	// chainTailLen is the length of `,"chainhash":"<64 hex>"}`.
	chainTailLen = len(chainHashKey) + 64 + 2
)

// chainState is where a chain stands: what the next line continues.
type chainState struct {
	prev      [64]byte // chainhash of the last line, Genesis before the first
	lastSeq   uint64   // streamseq of the last line; 0 before the first
	part      uint64   // part the next line goes to
	partLines int64    // lines already in that part
	filter    string   // the auditfilter of the chain
}

func newChainState(filter string) chainState {
	st := chainState{filter: filter}
	st.setPrev(Genesis)
	return st
}

func (s *chainState) setPrev(h string) { copy(s.prev[:], h) }

// prevHash is the chainhash of the last line (Genesis before the first).
func (s *chainState) prevHash() string { return string(s.prev[:]) }

// sink receives whole lines. Parts are numbered from 0.
type sink interface {
	write(line []byte) error
	// size is the number of bytes in the current part.
	size() int64
	// rotate closes the current part durably and opens part n.
	rotate(n uint64) error
	// sync makes everything written so far durable.
	sync() error
	close() error
}

// chainWriter appends lines to a sink, extending the hash chain.
type chainWriter struct {
	st      chainState
	stream  string
	maxSize int64 // rotate before a line when the part has reached it; 0 never
	out     sink
	line    []byte
	onLine  func(seq uint64) // optional, after each line
	onRot   func()           // optional, after each rotation
}

// writeBody completes body (a line's JSON object up to its last
// attribute, without the closing brace) with the head attributes when it
// starts a part, prevhash and chainhash, and writes it.
func (w *chainWriter) writeBody(body []byte, seq uint64) error {
	if w.maxSize > 0 && w.st.partLines > 0 && w.out.size() >= w.maxSize {
		if err := w.out.rotate(w.st.part + 1); err != nil {
			return err
		}
		w.st.part++
		w.st.partLines = 0
		if w.onRot != nil {
			w.onRot()
		}
	}
	var head *uint64
	if w.st.partLines == 0 {
		head = &w.st.part
	}
	line, hash := completeLine(w.line[:0], body, w.stream, head, w.st.filter, w.st.prev[:])
	w.line = line
	if err := w.out.write(line); err != nil {
		return err
	}
	copy(w.st.prev[:], hash)
	w.st.lastSeq = seq
	w.st.partLines++
	if w.onLine != nil {
		w.onLine(seq)
	}
	return nil
}

// completeLine appends to dst the line made of body, the head attributes
// when part is not nil, prevhash and chainhash, and a newline; it returns
// the line and its chainhash (a slice of the line).
func completeLine(dst, body []byte, stream string, part *uint64, filter string, prev []byte) ([]byte, []byte) {
	line := append(dst, body...)
	if part != nil {
		line = appendHead(line, stream, *part, filter)
	}
	line = append(line, prevHashKey...)
	line = append(line, prev...)
	line = append(line, '"', '}')
	sum := sha256.Sum256(line)
	line = line[:len(line)-1]
	line = append(line, chainHashKey...)
	n := len(line)
	line = hex.AppendEncode(line, sum[:])
	line = append(line, '"', '}', '\n')
	return line, line[n : n+64]
}

func appendHead(dst []byte, stream string, part uint64, filter string) []byte {
	dst = append(dst, `,"`+AttrFormat+`":"`+FormatVersion+`","`+AttrStream+`":`...)
	dst = appendString(dst, stream)
	dst = append(dst, `,"`+AttrPart+`":"`...)
	dst = strconv.AppendUint(dst, part, 10)
	dst = append(dst, `","`+AttrFilter+`":`...)
	return appendString(dst, filter)
}

// writerSink writes one part to an io.Writer (standard output): it never
// rotates and cannot sync.
type writerSink struct {
	w *bufio.Writer
	n int64
}

func newWriterSink(w io.Writer) *writerSink {
	return &writerSink{w: bufio.NewWriterSize(w, 256<<10)}
}

func (s *writerSink) write(line []byte) error {
	n, err := s.w.Write(line)
	s.n += int64(n)
	return err
}
func (s *writerSink) size() int64 { return s.n }
func (s *writerSink) rotate(uint64) error {
	return errors.New("audit: cannot rotate a stream output")
}
func (s *writerSink) sync() error  { return s.w.Flush() }
func (s *writerSink) close() error { return s.w.Flush() }

// fileSink writes the parts of a chain to base, base.000001, …, buffered;
// sync flushes and fsyncs.
type fileSink struct {
	base string
	f    *os.File
	w    *bufio.Writer
	n    int64
}

// createPart creates part n, which must not exist, and fsyncs its
// directory so that the new name survives a crash.
func createPart(base string, n uint64) (*os.File, error) {
	path := PartPath(base, n)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// newFileSink writes to f, already positioned at its end, which holds
// size bytes.
func newFileSink(base string, f *os.File, size int64) *fileSink {
	return &fileSink{base: base, f: f, w: bufio.NewWriterSize(f, 256<<10), n: size}
}

func (s *fileSink) write(line []byte) error {
	n, err := s.w.Write(line)
	s.n += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", s.f.Name(), err)
	}
	return nil
}

func (s *fileSink) size() int64 { return s.n }

func (s *fileSink) sync() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", s.f.Name(), err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.f.Name(), err)
	}
	return nil
}

func (s *fileSink) rotate(n uint64) error {
	if err := s.sync(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.f.Name(), err)
	}
	f, err := createPart(s.base, n)
	if err != nil {
		return err
	}
	s.f, s.n = f, 0
	s.w.Reset(f)
	return nil
}

func (s *fileSink) close() error {
	err := s.sync()
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", s.f.Name(), cerr)
	}
	return err
}
