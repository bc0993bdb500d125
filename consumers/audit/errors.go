package audit

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig reports a configuration that breaks a rule; the
	// message names every problem.
	ErrInvalidConfig = errors.New("audit: invalid config")
	// ErrNotAuditFile reports a file whose first line is not an audit
	// line (a CloudEvent with the audit attributes and a file head).
	ErrNotAuditFile = errors.New("audit: not an audit file")
	// ErrNotAuditLine reports a line that is not an audit line.
	ErrNotAuditLine = errors.New("audit: not an audit line")
	// ErrEdited reports a line whose bytes no longer match its chainhash
	// (or that no longer parses).
	ErrEdited = errors.New("audit: line edited")
	// ErrRemoved reports lines missing: the chain or the sequence jumps
	// over them.
	ErrRemoved = errors.New("audit: line removed")
	// ErrInserted reports a line that does not belong to the chain.
	ErrInserted = errors.New("audit: line inserted")
	// ErrReordered reports a line out of its place in the chain.
	ErrReordered = errors.New("audit: lines reordered")
	// ErrIncomplete reports a last line without its newline (a crash in
	// the middle of a write) where it cannot be ignored.
	ErrIncomplete = errors.New("audit: incomplete line")
	// ErrMissing reports events the stream has and the file lacks.
	ErrMissing = errors.New("audit: events missing from the file")
	// ErrMismatch reports lines that differ from the stream's messages,
	// or that the stream does not have.
	ErrMismatch = errors.New("audit: file differs from the stream")
	// ErrDuplicateFact reports a line whose ce-id an earlier line of the
	// files already has: the same fact stored twice on the stream (past
	// its de-duplication window), or a line copied and the chain
	// recomputed.
	ErrDuplicateFact = errors.New("audit: fact id appears twice")
	// ErrMsgIDMismatch reports a line recording a stream message whose
	// Nats-Msg-Id was not its ce-id (events.ErrMsgIDMismatch): a fact
	// stored by someone other than its publisher, copied as unreadable.
	ErrMsgIDMismatch = errors.New("audit: a stream message's Nats-Msg-Id is not its ce-id")
	// ErrExists reports a replay output file that already exists.
	ErrExists = errors.New("audit: output file exists")
	// ErrFileAhead reports an audit file whose last sequence is beyond
	// the stream's: it was not made from this stream.
	ErrFileAhead = errors.New("audit: file is ahead of the stream")
	// ErrLocked reports an audit file another follow is writing.
	ErrLocked = errors.New("audit: another follow is writing this file")
	// ErrNotFollowable reports an audit file that follow cannot extend:
	// another stream, or a filter that does not keep every later event.
	ErrNotFollowable = errors.New("audit: file cannot be extended by follow")
)

// LineError locates a verification failure: the file, the line (from 1)
// and, when known, the stream sequence. errors.Is matches its Err, one of
// the sentinels above.
type LineError struct {
	Path   string
	Line   int64
	Seq    uint64
	Err    error
	Detail string
}

func (e *LineError) Error() string {
	s := fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *LineError) Unwrap() error { return e.Err }
