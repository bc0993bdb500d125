package events

import (
	"errors"
	"fmt"
)

// Expect makes a publish conditional: the stream's last sequence on the
// subjects matching Subject (a filter such as SessionSubjects(id)) must
// be LastSeq; 0 means no message yet.
type Expect struct {
	Subject string
	LastSeq uint64
}

// ErrConflict reports a publish refused because the expected last
// sequence of its subjects was not the stream's: another writer got
// there first. The caller re-reads and decides again. A publisher returns
// it as a *ConflictError.
var ErrConflict = errors.New("events: concurrent write")

// ConflictError is ErrConflict with the sequence the stream holds for the
// subjects, so the caller can wait until its view has seen it.
type ConflictError struct {
	Subject string // the subject filter of the expectation
	LastSeq uint64 // the stream's last sequence for it
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("events: concurrent write on %s (last sequence %d)", e.Subject, e.LastSeq)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
