package audit

// The audit file a Follower resumes: locking it, repairing a torn last
// line and reading where the chain stands.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sessionbus/sessionbus/events/filelock"
)

// lockChain creates the first part of the chain at base if it is missing
// and locks it, so that two followers never append to one chain. It
// returns ErrLocked when another follower holds it.
func lockChain(base string) (*filelock.Lock, error) {
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		f, err := createPart(base, 0)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if f != nil {
			f.Close()
		}
	}
	l, err := filelock.Acquire(base)
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, base)
	}
	return l, err
}

// openChain opens the last part of the chain at base for appending. It
// removes an incomplete last line (returning its length) and returns the
// chain's state after the last complete line; a missing base starts a new
// chain.
func openChain(base, stream string) (chainState, *os.File, int64, int64, error) {
	var n uint64
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		file, err := createPart(base, 0)
		if err != nil {
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
		}
		return newChainState(Filter{}.String()), file, 0, 0, nil
	} else if err != nil {
		return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
	}
	for {
		if _, err := os.Stat(PartPath(base, n+1)); err != nil {
			break
		}
		n++
	}
	path := PartPath(base, n)
	file, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
	}
	size, repaired, last, err := repairTail(file)
	if err != nil {
		file.Close()
		return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w", path, err)
	}
	st := newChainState(Filter{}.String())
	st.part = n
	headPath := path
	if last == nil && n > 0 {
		// An empty part after a rotation: the chain goes on from the
		// previous part's last line.
		headPath = PartPath(base, n-1)
		prev, err := os.Open(headPath)
		if err != nil {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
		}
		fi, err := prev.Stat()
		if err == nil {
			last, err = lastLine(prev, fi.Size())
		}
		prev.Close()
		if err != nil || last == nil {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: no complete last line before the empty part %s", headPath, ErrNotAuditFile, path)
		}
	}
	if last != nil {
		l, err := ParseLine(last)
		if err != nil || !l.HashOK() {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: its last line is not an intact audit line (run verify)", path, ErrNotAuditFile)
		}
		head, err := firstHead(headPath)
		if err != nil {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w", headPath, err)
		}
		wantPart := n
		if headPath != path {
			wantPart = n - 1
		}
		if head.Part != wantPart {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: its %s is %d, want %d", headPath, ErrNotAuditFile, AttrPart, head.Part, wantPart)
		}
		if head.Stream != stream || !head.Filter.Contiguous() || !head.Filter.Until.IsZero() {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: it copies stream %s with filter %q", headPath, ErrNotFollowable, head.Stream, head.RawFilter)
		}
		st.setPrev(l.ChainHash)
		st.lastSeq, st.filter = l.Seq, head.RawFilter
		if size > 0 {
			st.partLines = 1 // not empty: no head on the next line
		}
	}
	return st, file, size, repaired, nil
}

// repairTail truncates what follows the last newline of f and fsyncs;
// it returns the new size, the bytes removed and the last complete line
// (nil when none).
func repairTail(f *os.File) (size, removed int64, last []byte, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	size = fi.Size()
	end, err := lastNewline(f, size)
	if err != nil {
		return 0, 0, nil, err
	}
	if end < size {
		if err := f.Truncate(end); err != nil {
			return 0, 0, nil, fmt.Errorf("truncate: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, nil, fmt.Errorf("sync: %w", err)
		}
		removed, size = size-end, end
	}
	last, err = lastLine(f, size)
	return size, removed, last, err
}

// lastNewline returns the offset just after the last newline in the first
// size bytes of f (0 when there is none).
func lastNewline(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// lastLine returns the last line of the first size bytes of f, which end
// with a newline, without it; nil when size is 0.
func lastLine(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	start, err := lastNewline(f, size-1)
	if err != nil {
		return nil, err
	}
	if size-start > maxLine {
		return nil, fmt.Errorf("last line longer than %d bytes", maxLine)
	}
	b := make([]byte, size-start)
	if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, errors.New("file does not end with a newline")
	}
	return b[:len(b)-1], nil
}

// firstHead reads the head of the file at path from its first line.
func firstHead(path string) (*Head, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line, complete, err := newLineReader(f).next()
	if err != nil || !complete {
		return nil, fmt.Errorf("%w: no complete first line", ErrNotAuditFile)
	}
	l, err := ParseLine(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAuditFile, err)
	}
	if l.Head == nil {
		return nil, fmt.Errorf("%w: its first line has no %s attribute", ErrNotAuditFile, AttrFormat)
	}
	return l.Head, nil
}
