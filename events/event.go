package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// SpecVersion is the CloudEvents version of every event.
const SpecVersion = "1.0"

// ContentTypeJSON is the content type of every event's data.
const ContentTypeJSON = "application/json"

// MaxEventSize caps the size of one event (headers and data) that the codec
// accepts. Facts are small; anything larger is hostile or broken.
const MaxEventSize = 64 << 10

// Event is one CloudEvent: a fact on the stream or a command request.
type Event struct {
	ID     string // ce-id, also Nats-Msg-Id on the stream
	Type   Type   // ce-type
	Source string // ce-source, /sessionbus/<instance> for facts
	// Subject is ce-subject: the id of the aggregate the fact is about
	// (session, user, token or key id); the last token of the NATS subject.
	Subject    string
	Time       time.Time       // ce-time
	DataSchema string          // ce-dataschema
	Data       json.RawMessage // the data, JSON
	// TraceParent and TraceState are the CloudEvents Distributed Tracing
	// extension (ce-traceparent, ce-tracestate): the W3C Trace Context of
	// the span that published the fact, so that whoever applies it can
	// continue the trace. Empty when it has none; the codec keeps only a
	// well-formed one (see SetTrace and Trace).
	TraceParent string
	TraceState  string
}

// NewID returns a new event or aggregate id: a ULID, unique, time-ordered
// and subject-safe. It is not secret.
func NewID() string { return ulid.Make().String() }

// New builds the fact of type t about the aggregate id, from source, at
// time at, with data marshalled to JSON. It returns ErrUnknownType for an
// unknown type and ErrMalformed for an id that is not subject-safe.
func New(t Type, source, id string, at time.Time, data any) (Event, error) {
	if !t.Known() {
		return Event{}, fmt.Errorf("%w: %q", ErrUnknownType, t)
	}
	if !ValidID(id) {
		return Event{}, fmt.Errorf("%w: aggregate id %q is not subject-safe", ErrMalformed, id)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s data: %w", t, err)
	}
	return Event{
		ID:         NewID(),
		Type:       t,
		Source:     source,
		Subject:    id,
		Time:       at.UTC(),
		DataSchema: t.DataSchema(),
		Data:       b,
	}, nil
}

// Source returns the ce-source of facts published by the instance named.
func Source(instance string) string { return "/sessionbus/" + instance }

// NATSSubject returns the stream subject of a fact:
// auth.events.<aggregate>.<action>.<Subject>, or "" if the type is unknown.
func (e Event) NATSSubject() string { return e.Type.Subject(e.Subject) }

// DecodeData returns the data of a known fact type as a pointer to its Go
// type (*SessionCreated, *UserRevoked, …). It returns ErrUnknownType for a
// type this version does not know and ErrMalformed for data that is not
// that type's JSON.
func (e Event) DecodeData() (any, error) {
	v := dataFor(e.Type)
	if v == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, e.Type)
	}
	if err := e.DataAs(v); err != nil {
		return nil, err
	}
	return v, nil
}

// DataAs decodes the data into v. Fields v does not have are ignored, so
// that a v1 shape can gain optional fields without breaking older readers.
// It returns ErrMalformed on failure.
func (e Event) DataAs(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("%w: data: %v", ErrMalformed, err)
	}
	return nil
}

// Stored is one message read back from the stream.
type Stored struct {
	Seq     uint64    // stream sequence
	Subject string    // NATS subject
	Time    time.Time // when the stream stored it
	// Event is the decoded CloudEvent when Err is nil. Its Type may still
	// be unknown to this version (check Type.Known).
	Event Event
	// Err says why the message is not a readable CloudEvent
	// (ErrMalformed, ErrTooLarge, ErrMsgIDMismatch).
	Err error
}
