package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/sessionbus/sessionbus/events"
)

// Line is one parsed line of an audit file.
type Line struct {
	// Raw is the line without its newline.
	Raw []byte
	// Event is the line read by the CloudEvents SDK.
	Event ce.Event
	// Seq is the streamseq; FirstSeq equals it except on a gap line,
	// which covers FirstSeq to Seq.
	Seq, FirstSeq uint64
	// StreamTime and NATSSubject are zero on gap lines.
	StreamTime  time.Time
	NATSSubject string
	PrevHash    string
	ChainHash   string
	// Head is set on the first line of a file.
	Head *Head
}

// IsGap reports whether l is a TypeGap line.
func (l *Line) IsGap() bool { return l.Event.Type() == TypeGap }

// HashOK reports whether the chainhash is the SHA-256 of the line's
// canonical bytes: the line without its last member
// ,"chainhash":"…" (that is, ending in "prevhash":"…"}).
func (l *Line) HashOK() bool {
	h := sha256.New()
	h.Write(l.Raw[:len(l.Raw)-chainTailLen])
	h.Write([]byte{'}'})
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])) == l.ChainHash
}

func notLine(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNotAuditLine, fmt.Sprintf(format, a...))
}

// ParseLine parses one line of an audit file (without its newline). It
// checks the form (a CloudEvent with the audit attributes, chainhash
// last) but not the hash: see HashOK. It returns ErrNotAuditLine.
func ParseLine(b []byte) (*Line, error) {
	if len(b) < chainTailLen+2 || b[0] != '{' ||
		!bytes.HasPrefix(b[len(b)-chainTailLen:], []byte(chainHashKey)) || !bytes.HasSuffix(b, []byte(`"}`)) {
		return nil, notLine("it does not end with the %s attribute", AttrChainHash)
	}
	l := &Line{Raw: b}
	l.ChainHash = string(b[len(b)-chainTailLen+len(chainHashKey) : len(b)-2])
	if !isHash(l.ChainHash) {
		return nil, notLine("%s is not 64 lowercase hex digits", AttrChainHash)
	}
	if err := json.Unmarshal(b, &l.Event); err != nil {
		return nil, notLine("not a CloudEvent: %v", err)
	}
	if err := l.Event.Validate(); err != nil {
		return nil, notLine("not a valid CloudEvent: %v", err)
	}
	exts := l.Event.Extensions()
	str := func(name string) (string, bool, error) {
		v, ok := exts[name]
		if !ok {
			return "", false, nil
		}
		s, isStr := v.(string)
		if !isStr {
			return "", true, notLine("%s is not a string", name)
		}
		return s, true, nil
	}
	var err error
	var s string
	var ok bool
	if s, ok, err = str(AttrChainHash); err != nil || !ok || s != l.ChainHash {
		return nil, notLine("%s attribute is not the last member's value", AttrChainHash)
	}
	if s, ok, err = str(AttrStreamSeq); err != nil || !ok {
		return nil, notLine("no %s string attribute", AttrStreamSeq)
	}
	if l.Seq, err = strconv.ParseUint(s, 10, 64); err != nil || l.Seq == 0 || s[0] == '0' {
		return nil, notLine("%s %q is not a positive decimal", AttrStreamSeq, s)
	}
	l.FirstSeq = l.Seq
	if l.PrevHash, ok, err = str(AttrPrevHash); err != nil || !ok || !isHash(l.PrevHash) {
		return nil, notLine("no %s of 64 lowercase hex digits", AttrPrevHash)
	}
	if s, ok, err = str(AttrStreamTime); err != nil {
		return nil, err
	} else if ok {
		if l.StreamTime, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, notLine("%s %q is not RFC 3339", AttrStreamTime, s)
		}
	}
	if l.NATSSubject, _, err = str(AttrNATSSubject); err != nil {
		return nil, err
	}
	if err := l.parseHead(str); err != nil {
		return nil, err
	}
	if l.IsGap() {
		var g GapData
		if err := json.Unmarshal(l.Event.Data(), &g); err != nil || g.FirstSeq == 0 || g.FirstSeq > g.LastSeq || g.LastSeq != l.Seq {
			return nil, notLine("gap line without a valid first_seq..last_seq ending at its %s", AttrStreamSeq)
		}
		l.FirstSeq = g.FirstSeq
	}
	return l, nil
}

func (l *Line) parseHead(str func(string) (string, bool, error)) error {
	format, hasFormat, err := str(AttrFormat)
	if err != nil {
		return err
	}
	if !hasFormat {
		for _, a := range []string{AttrStream, AttrPart, AttrFilter} {
			if _, ok := l.Event.Extensions()[a]; ok {
				return notLine("%s without %s", a, AttrFormat)
			}
		}
		return nil
	}
	if format != FormatVersion {
		return notLine("%s %q is not %q", AttrFormat, format, FormatVersion)
	}
	h := &Head{Format: format}
	var ok bool
	if h.Stream, ok, err = str(AttrStream); err != nil || !ok || h.Stream == "" {
		return notLine("file head without %s", AttrStream)
	}
	part, ok, err := str(AttrPart)
	if err != nil || !ok {
		return notLine("file head without %s", AttrPart)
	}
	if h.Part, err = strconv.ParseUint(part, 10, 64); err != nil {
		return notLine("%s %q is not a decimal", AttrPart, part)
	}
	if h.RawFilter, ok, err = str(AttrFilter); err != nil || !ok {
		return notLine("file head without %s", AttrFilter)
	}
	if h.Filter, err = ParseFilter(h.RawFilter); err != nil {
		return notLine("%v", err)
	}
	l.Head = h
	return nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isAuditType reports whether t is one of the types the audit writes.
func isAuditType(t string) bool { return t == TypeGap || t == TypeUnreadable }

// isForeign reports whether a line of type t is a CloudEvent copied from
// the stream whose type this version does not know.
func isForeign(t string) bool { return !isAuditType(t) && !events.Type(t).Known() }

// maxLine bounds one line: an unreadable 64 KiB message in base64 with
// its headers fits many times over.
const maxLine = 4 << 20

// lineReader reads lines, reporting whether the last one ended with a
// newline.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next line without its newline and whether it had one;
// io.EOF after the last. The line is valid until the next call.
func (lr *lineReader) next() ([]byte, bool, error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if err == nil {
			if len(lr.buf) == 0 {
				return chunk[:len(chunk)-1], true, nil
			}
			lr.buf = append(lr.buf, chunk[:len(chunk)-1]...)
			return lr.buf, true, nil
		}
		lr.buf = append(lr.buf, chunk...)
		if len(lr.buf) > maxLine {
			return nil, false, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(lr.buf) > 0 {
			return lr.buf, false, nil
		}
		return nil, false, err
	}
}
