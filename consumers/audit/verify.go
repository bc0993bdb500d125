package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// VerifyConfig configures Verify.
type VerifyConfig struct {
	// PrevHash is the chainhash of the line before the first file's first
	// line, when that file continues a chain (its auditpart is not 0).
	// Without it, that one link is reported as not checked.
	PrevHash string
	// ExpectHashes are chainhashes noted earlier (anchors): each must be
	// the chainhash of a line, which proves that the chain up to it is
	// unchanged and still there.
	ExpectHashes []string
	// Against, when set, compares the files with the stream: every event
	// the stream holds in the files' range must be in them, byte for byte
	// as the stream has it.
	Against jetstream.JetStream
	// Complete, with Against, counts the stream's events after the files'
	// last line as missing too: for a copy that should hold everything
	// (a finished replay, a stopped follow). Without it they are only
	// reported (Report.StreamNewer), since a live copy always lags a bit.
	Complete bool
}

// FileReport describes one verified file.
type FileReport struct {
	Path     string `json:"path"`
	Part     uint64 `json:"part"`
	Lines    int64  `json:"lines"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Incomplete is the length of an incomplete last line that was
	// ignored (a write in progress or a crash; follow removes it).
	Incomplete int `json:"incomplete_bytes,omitempty"`
}

// Report is what Verify found.
type Report struct {
	Files  []FileReport `json:"files"` // in chain order
	Stream string       `json:"stream"`
	Filter string       `json:"filter"` // the auditfilter of the chain
	// Lines counts every line; Unreadable and Foreign the lines of
	// messages that were not facts of this version.
	Lines      int64 `json:"lines"`
	Unreadable int64 `json:"unreadable"`
	Foreign    int64 `json:"foreign"`
	// Gaps are the ranges of sequences the chain says had no message.
	Gaps []GapData `json:"gaps,omitempty"`
	// FirstSeq and LastSeq are the sequences the files cover.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// FirstPrevHash is the first line's prevhash (Genesis when the
	// chain starts in these files); LastHash the last line's chainhash.
	FirstPrevHash string `json:"first_prevhash"`
	LastHash      string `json:"last_chainhash"`
	// DuplicateIDs counts the lines whose ce-id an earlier line already
	// has; MsgIDMismatch the lines recording a message whose Nats-Msg-Id
	// was not its ce-id. Suspects lists those lines (the first 1,000);
	// Verify fails when there is any.
	DuplicateIDs  int64     `json:"duplicate_ids,omitempty"`
	MsgIDMismatch int64     `json:"msgid_mismatch,omitempty"`
	Suspects      []Suspect `json:"suspects,omitempty"`
	// Notes are facts worth a look that are not failures.
	Notes []string `json:"notes,omitempty"`
	// With VerifyConfig.Against: lines compared with their stream
	// message, lines whose message is no longer on the stream (aged out),
	// and stream sequences after the files' last line.
	StreamChecked int64  `json:"stream_checked,omitempty"`
	StreamAgedOut int64  `json:"stream_aged_out,omitempty"`
	StreamNewer   uint64 `json:"stream_newer,omitempty"`
}

// lookahead is how many lines Verify reads past a broken link to tell an
// insertion from a reordering.
const lookahead = 64

type chainFile struct {
	path  string
	head  *Head
	empty bool
}

// Verify checks the audit files at paths, the parts of one chain in any
// order: each line's chainhash, the link of each line to the one before
// (across files too), the sequence continuity the chain's filter promises,
// and that every line fits that filter. It returns the report and, for
// the first failure, a *LineError wrapping ErrNotAuditFile, ErrEdited,
// ErrRemoved, ErrInserted, ErrReordered or ErrIncomplete. With
// cfg.Against it then compares with the stream: ErrMissing, ErrMismatch.
//
// A chain intact in all of that may still hold facts not to be trusted:
// a line whose ce-id an earlier line already has, and a line recording a
// message whose Nats-Msg-Id was not its ce-id. Verify lists them in
// Report.Suspects and then fails with a *LineError for the first of each
// kind, wrapping ErrDuplicateFact or ErrMsgIDMismatch (joined when there
// are both). Duplicates are found among the files given: give every part
// of a chain to find a fact repeated across parts.
func Verify(ctx context.Context, paths []string, cfg VerifyConfig) (*Report, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no file to verify", ErrInvalidConfig)
	}
	if cfg.PrevHash != "" && !isHash(cfg.PrevHash) {
		return nil, fmt.Errorf("%w: prev hash is not 64 lowercase hex digits", ErrInvalidConfig)
	}
	files := make([]chainFile, 0, len(paths))
	var head *Head
	for _, p := range paths {
		h, err := readHead(p)
		if err != nil {
			return nil, err
		}
		if h == nil {
			files = append(files, chainFile{path: p, empty: true})
			continue
		}
		if head == nil {
			head = h
		} else if h.Stream != head.Stream || h.RawFilter != head.RawFilter {
			return nil, &LineError{Path: p, Line: 1, Err: ErrNotAuditFile,
				Detail: fmt.Sprintf("not part of the same chain as the other files (stream %s, filter %q)", h.Stream, h.RawFilter)}
		}
		files = append(files, chainFile{path: p, head: h})
	}
	// Chain order; empty files (a part created just before a crash) last.
	slices.SortStableFunc(files, func(a, b chainFile) int {
		switch {
		case a.empty || b.empty:
			return boolCmp(a.empty, b.empty)
		case a.head.Part < b.head.Part:
			return -1
		case a.head.Part > b.head.Part:
			return 1
		}
		return 0
	})
	rep := &Report{}
	if head == nil {
		for _, f := range files {
			rep.Files = append(rep.Files, FileReport{Path: f.path})
		}
		rep.Notes = append(rep.Notes, "no lines: every file is empty")
		return rep, nil
	}
	rep.Stream, rep.Filter = head.Stream, head.RawFilter
	v := &verifier{rep: rep, filter: head.Filter, cfg: cfg, anchors: map[string]bool{}, ids: newIDSet()}
	for _, h := range cfg.ExpectHashes {
		v.anchors[h] = false
	}
	for i, f := range files {
		if f.empty {
			rep.Files = append(rep.Files, FileReport{Path: f.path})
			rep.Notes = append(rep.Notes, f.path+" is empty")
			continue
		}
		if i > 0 && !files[i-1].empty {
			prev := files[i-1].head.Part
			switch {
			case f.head.Part == prev:
				return rep, &LineError{Path: f.path, Line: 1, Err: ErrInserted, Detail: fmt.Sprintf("%s also claims part %d", files[i-1].path, prev)}
			case f.head.Part != prev+1:
				return rep, &LineError{Path: f.path, Line: 1, Err: ErrRemoved, Detail: fmt.Sprintf("part %d follows part %d: the parts between are missing", f.head.Part, prev)}
			}
		}
		last := i == len(files)-1 || files[i+1].empty
		if err := v.file(ctx, f, last); err != nil {
			return rep, err
		}
	}
	for h, found := range v.anchors {
		if !found {
			return rep, fmt.Errorf("%w: no line has the expected chainhash %s: the chain was rewritten or cut before it", ErrRemoved, h)
		}
	}
	if cfg.Against != nil {
		if err := compareStream(ctx, cfg.Against, files, head, rep, cfg.Complete); err != nil {
			return rep, err
		}
	}
	return rep, v.suspectsErr()
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// readHead returns the head on the first line of path; nil for a file
// without a complete line.
func readHead(path string) (*Head, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line, complete, err := newLineReader(f).next()
	if errors.Is(err, io.EOF) || (err == nil && !complete) {
		return nil, nil
	}
	if err != nil {
		return nil, &LineError{Path: path, Line: 1, Err: ErrNotAuditFile, Detail: err.Error()}
	}
	l, err := ParseLine(line)
	if err != nil {
		return nil, &LineError{Path: path, Line: 1, Err: ErrNotAuditFile, Detail: err.Error()}
	}
	if l.Head == nil {
		return nil, &LineError{Path: path, Line: 1, Seq: l.Seq, Err: ErrRemoved,
			Detail: fmt.Sprintf("the first line has no %s attribute: the lines before it were removed", AttrFormat)}
	}
	return l.Head, nil
}

type verifier struct {
	rep     *Report
	filter  Filter
	cfg     VerifyConfig
	anchors map[string]bool
	started bool // a line has been checked
	prev    string
	prevSeq uint64
	// where the previous line is
	prevPath string
	prevLine int64

	ids *idSet // the ce-ids seen
	// the first suspect line of each kind
	firstDup, firstMismatch *LineError
}

func (v *verifier) file(ctx context.Context, cf chainFile, last bool) error {
	f, err := os.Open(cf.path)
	if err != nil {
		return err
	}
	defer f.Close()
	fr := FileReport{Path: cf.path, Part: cf.head.Part}
	defer func() { v.rep.Files = append(v.rep.Files, fr) }()
	lr := newLineReader(f)
	for n := int64(1); ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		raw, complete, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &LineError{Path: cf.path, Line: n, Err: ErrNotAuditLine, Detail: err.Error()}
		}
		lerr := func(seq uint64, kind error, format string, a ...any) error {
			return &LineError{Path: cf.path, Line: n, Seq: seq, Err: kind, Detail: fmt.Sprintf(format, a...)}
		}
		if !complete {
			if last {
				fr.Incomplete = len(raw)
				v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%s:%d: incomplete last line (%d bytes) ignored: a write in progress, or a crash that follow repairs on restart", cf.path, n, len(raw)))
				return nil
			}
			return lerr(0, ErrIncomplete, "a line without its newline ends a part that is not the last")
		}
		l, perr := ParseLine(raw)
		if perr != nil {
			next := v.readAhead(lr, 1)
			if len(next) == 1 && next[0].PrevHash == v.prev {
				return lerr(0, ErrInserted, "%v; the next line continues the chain without it", perr)
			}
			return lerr(0, ErrEdited, "%v", perr)
		}
		if !l.HashOK() {
			return lerr(l.Seq, ErrEdited, "its bytes do not match its %s", AttrChainHash)
		}
		if l.Head != nil && n > 1 {
			return lerr(l.Seq, ErrInserted, "it carries a file head (%s): it comes from the start of a file", AttrFormat)
		}
		if err := v.link(cf, n, l, lr); err != nil {
			return err
		}
		v.prevPath, v.prevLine = cf.path, n
		if err := v.fits(l); err != nil {
			return lerr(l.Seq, ErrInserted, "%v", err)
		}
		if fr.Lines == 0 {
			fr.FirstSeq = l.FirstSeq
		}
		fr.Lines++
		fr.LastSeq = l.Seq
		v.count(l)
		v.inspect(cf.path, n, l)
	}
}

// link checks that l continues the chain: its prevhash and its sequence.
func (v *verifier) link(cf chainFile, n int64, l *Line, lr *lineReader) error {
	lerr := func(kind error, format string, a ...any) error {
		return &LineError{Path: cf.path, Line: n, Seq: l.Seq, Err: kind, Detail: fmt.Sprintf(format, a...)}
	}
	if !v.started {
		v.started = true
		v.rep.FirstSeq, v.rep.FirstPrevHash = l.FirstSeq, l.PrevHash
		switch {
		case cf.head.Part == 0 && l.PrevHash != Genesis:
			return lerr(ErrEdited, "part 0 must start at the genesis hash")
		case cf.head.Part > 0 && v.cfg.PrevHash == "":
			v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%s is part %d: its link to part %d (prevhash %s) was not checked; give the earlier parts or their last chainhash", cf.path, cf.head.Part, cf.head.Part-1, l.PrevHash))
		case cf.head.Part > 0 && l.PrevHash != v.cfg.PrevHash:
			return lerr(ErrRemoved, "prevhash %s is not the given hash of the line before this part: lines around the boundary were removed or changed", l.PrevHash)
		}
		f := v.filter
		if cf.head.Part == 0 && f.FromSeq > 0 && f.Since.IsZero() {
			if f.Contiguous() && l.FirstSeq != f.FromSeq {
				return lerr(ErrRemoved, "the chain starts at sequence %d but its filter copies from %d", l.FirstSeq, f.FromSeq)
			}
		}
		v.prev, v.prevSeq = l.ChainHash, l.Seq
		return nil
	}
	if l.PrevHash != v.prev {
		return v.broken(cf, n, l, lr)
	}
	if v.filter.Contiguous() && l.FirstSeq != v.prevSeq+1 {
		if l.FirstSeq > v.prevSeq+1 {
			for i, a := range v.readAhead(lr, lookahead) {
				if a.FirstSeq == v.prevSeq+1 {
					return lerr(ErrReordered, "sequence %d follows %d; sequence %d is at line %d (the chain was recomputed)", l.FirstSeq, v.prevSeq, a.FirstSeq, n+1+int64(i))
				}
			}
			return lerr(ErrRemoved, "sequences %d to %d are missing (the chain was recomputed over the hole)", v.prevSeq+1, l.FirstSeq-1)
		}
		return lerr(ErrReordered, "sequence %d follows %d (the chain was recomputed)", l.FirstSeq, v.prevSeq)
	}
	if l.FirstSeq <= v.prevSeq {
		return lerr(ErrReordered, "sequence %d follows %d (the chain was recomputed)", l.FirstSeq, v.prevSeq)
	}
	v.prev, v.prevSeq = l.ChainHash, l.Seq
	return nil
}

// broken explains a line whose prevhash is not the previous chainhash.
func (v *verifier) broken(cf chainFile, n int64, l *Line, lr *lineReader) error {
	lerr := func(kind error, format string, a ...any) error {
		return &LineError{Path: cf.path, Line: n, Seq: l.Seq, Err: kind, Detail: fmt.Sprintf(format, a...)}
	}
	where := "the previous line"
	if n == 1 {
		where = "the last line of the previous part"
	}
	ahead := v.readAhead(lr, lookahead)
	for i, a := range ahead {
		if a.PrevHash != v.prev {
			continue
		}
		// Line n+1+i is the one that continues the chain.
		for _, b := range ahead {
			if b.ChainHash == l.PrevHash {
				return lerr(ErrReordered, "it does not follow %s; line %d does: lines were moved", where, n+1+int64(i))
			}
		}
		if i == 0 {
			return lerr(ErrInserted, "it does not follow %s, and line %d continues the chain without it", where, n+1)
		}
		return lerr(ErrInserted, "lines %d to %d do not belong to the chain; line %d continues it", n, n+int64(i), n+1+int64(i))
	}
	switch {
	case v.filter.Contiguous() && l.FirstSeq > v.prevSeq+1:
		return lerr(ErrRemoved, "lines were removed before it: sequences %d to %d are missing", v.prevSeq+1, l.FirstSeq-1)
	case l.FirstSeq <= v.prevSeq:
		return lerr(ErrReordered, "sequence %d comes after %d: a line was moved or repeated", l.FirstSeq, v.prevSeq)
	case v.filter.Contiguous():
		// The sequence goes on but the link does not: the line before was
		// changed and its own chainhash recomputed.
		return &LineError{Path: v.prevPath, Line: v.prevLine, Seq: v.prevSeq, Err: ErrEdited,
			Detail: fmt.Sprintf("its chainhash was recomputed after a change: %s:%d (sequence %d) does not link to it", cf.path, n, l.Seq)}
	}
	return lerr(ErrRemoved, "it does not follow %s: the line it follows was removed, or changed and rehashed", where)
}

// readAhead parses up to n further lines, stopping at the first that is
// not an intact audit line.
func (v *verifier) readAhead(lr *lineReader, n int) []*Line {
	var out []*Line
	for range n {
		raw, complete, err := lr.next()
		if err != nil || !complete {
			break
		}
		l, err := ParseLine(bytes.Clone(raw))
		if err != nil || !l.HashOK() {
			break
		}
		out = append(out, l)
	}
	return out
}

// fits reports why l cannot be a line of the chain's filter.
func (v *verifier) fits(l *Line) error {
	f := v.filter
	if l.IsGap() {
		return nil
	}
	if f.FromSeq > 0 && l.Seq < f.FromSeq {
		return fmt.Errorf("sequence %d is before the filter's from=%d", l.Seq, f.FromSeq)
	}
	if typ := l.Event.Type(); !f.keepsType(typ) {
		return fmt.Errorf("type %s is not one the filter keeps", typ)
	}
	if f.Subject != "" && !subjectMatches(f.Subject, l.NATSSubject) {
		return fmt.Errorf("subject %q does not match the filter's %q", l.NATSSubject, f.Subject)
	}
	if !f.Since.IsZero() && l.StreamTime.Before(f.Since) {
		return fmt.Errorf("stored at %s, before the filter's since", l.StreamTime.Format("2006-01-02T15:04:05.999999999Z07:00"))
	}
	if !f.Until.IsZero() && l.StreamTime.After(f.Until) {
		return fmt.Errorf("stored at %s, after the filter's until", l.StreamTime.Format("2006-01-02T15:04:05.999999999Z07:00"))
	}
	return nil
}

func (v *verifier) count(l *Line) {
	r := v.rep
	r.Lines++
	r.LastSeq, r.LastHash = l.Seq, l.ChainHash
	switch typ := l.Event.Type(); {
	case typ == TypeGap:
		r.Gaps = append(r.Gaps, GapData{FirstSeq: l.FirstSeq, LastSeq: l.Seq, Reason: gapReason})
	case typ == TypeUnreadable:
		r.Unreadable++
	case isForeign(typ):
		r.Foreign++
	}
	if _, ok := v.anchors[l.ChainHash]; ok {
		v.anchors[l.ChainHash] = true
	}
}

// subjectMatches reports whether the NATS subject matches filter, with
// the * and > wildcards.
func subjectMatches(filter, subject string) bool {
	ft := strings.Split(filter, ".")
	st := strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
