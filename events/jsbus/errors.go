package jsbus

import (
	"errors"
	"fmt"
)

var (
	// ErrConflict reports a publish refused because the expected last
	// sequence of its subjects was not the stream's: another writer got
	// there first. The caller re-reads and decides again. Publish returns
	// it as a *ConflictError.
	ErrConflict = errors.New("jsbus: concurrent write")
	// ErrInvalidConfig reports a stream configuration that breaks a rule
	// (see StreamConfig).
	ErrInvalidConfig = errors.New("jsbus: invalid stream config")
)

// ConflictError is ErrConflict with the sequence the stream holds for the
// subjects, so the caller can wait until its view has seen it.
type ConflictError struct {
	Subject string // the subject filter of the expectation
	LastSeq uint64 // the stream's last sequence for it
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("jsbus: concurrent write on %s (last sequence %d)", e.Subject, e.LastSeq)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
