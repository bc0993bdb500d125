package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/sessionbus/sessionbus/events"
)

// Reasons of a Suspect.
const (
	// SuspectDuplicateID: the line's ce-id is an earlier line's.
	SuspectDuplicateID = "duplicate_id"
	// SuspectMsgIDMismatch: the line records a stream message whose
	// Nats-Msg-Id was not its ce-id.
	SuspectMsgIDMismatch = "msgid_mismatch"
)

// Suspect is a line that belongs to its chain but whose fact is not to be
// trusted.
type Suspect struct {
	Path string `json:"path"`
	Line int64  `json:"line"`
	Seq  uint64 `json:"seq"`
	// ID is the fact's ce-id ("" when the message did not have one).
	ID     string `json:"id"`
	Reason string `json:"reason"` // SuspectDuplicateID or SuspectMsgIDMismatch
	Detail string `json:"detail"`
}

// maxSuspects bounds Report.Suspects; the counts go on.
const maxSuspects = 1000

// inspect looks at the fact of l, line n of path, which verified: its
// ce-id must be new to the files, and an unreadable line must not record
// a message whose Nats-Msg-Id was not its ce-id.
func (v *verifier) inspect(path string, n int64, l *Line) {
	id := l.Event.ID()
	if prev, dup := v.ids.add(id, l.Seq); dup {
		v.rep.DuplicateIDs++
		detail := fmt.Sprintf("its ce-id %q is also the id of the line of sequence %d: the same fact is twice on the stream, or a line was copied", id, prev)
		v.suspect(&v.firstDup, ErrDuplicateFact, Suspect{Path: path, Line: n, Seq: l.Seq, ID: id, Reason: SuspectDuplicateID, Detail: detail})
	}
	if l.Event.Type() != TypeUnreadable {
		return
	}
	var d UnreadableData
	if json.Unmarshal(l.Event.Data(), &d) != nil {
		return
	}
	h := nats.Header(d.Headers)
	_, err := events.FromMsg(&nats.Msg{Subject: l.NATSSubject, Header: h, Data: d.Body})
	if !errors.Is(err, events.ErrMsgIDMismatch) {
		return
	}
	v.rep.MsgIDMismatch++
	detail := strings.TrimPrefix(err.Error(), events.ErrMsgIDMismatch.Error()+": ") +
		": a message stored by someone other than the fact's publisher, not a fact to trust"
	v.suspect(&v.firstMismatch, ErrMsgIDMismatch, Suspect{Path: path, Line: n, Seq: l.Seq, ID: first(h, events.HeaderID), Reason: SuspectMsgIDMismatch, Detail: detail})
}

func (v *verifier) suspect(firstErr **LineError, kind error, s Suspect) {
	if len(v.rep.Suspects) < maxSuspects {
		v.rep.Suspects = append(v.rep.Suspects, s)
	}
	if *firstErr == nil {
		*firstErr = &LineError{Path: s.Path, Line: s.Line, Seq: s.Seq, Err: kind, Detail: s.Detail}
	}
}

// suspectsErr returns the error for the suspect lines found: the first of
// each kind, with how many there are in all.
func (v *verifier) suspectsErr() error {
	var errs []error
	for _, e := range []struct {
		first *LineError
		n     int64
		what  string
	}{{v.firstDup, v.rep.DuplicateIDs, "lines repeat an earlier ce-id"}, {v.firstMismatch, v.rep.MsgIDMismatch, "lines record a message whose Nats-Msg-Id is not its ce-id"}} {
		if e.first == nil {
			continue
		}
		if e.n > 1 {
			e.first.Detail += fmt.Sprintf(" (%d %s in all: see the report's suspects)", e.n, e.what)
		}
		errs = append(errs, e.first)
	}
	return errors.Join(errs...)
}

// idSet holds the ce-ids of the lines seen, each with the sequence of its
// line: a ULID in its canonical form as its 16 bytes (every fact of
// sessionbus), any other id as a string.
type idSet struct {
	ulids  map[ulid.ULID]uint64
	others map[string]uint64
}

func newIDSet() *idSet {
	return &idSet{ulids: map[ulid.ULID]uint64{}, others: map[string]uint64{}}
}

// add records id for the line of sequence seq; if id was already there
// it returns the sequence of that line and true.
func (s *idSet) add(id string, seq uint64) (uint64, bool) {
	if u, err := ulid.ParseStrict(id); err == nil {
		var canon [ulid.EncodedSize]byte
		if u.MarshalTextTo(canon[:]) == nil && string(canon[:]) == id {
			if prev, ok := s.ulids[u]; ok {
				return prev, true
			}
			s.ulids[u] = seq
			return 0, false
		}
	}
	if prev, ok := s.others[id]; ok {
		return prev, true
	}
	s.others[id] = seq
	return 0, false
}
