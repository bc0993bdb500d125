package events

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// Header names of the CloudEvents NATS binding in binary content mode, and
// the JetStream de-duplication header.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderSubject     = "ce-subject"
	HeaderTime        = "ce-time"
	HeaderDataSchema  = "ce-dataschema"
	HeaderContentType = "content-type"
	HeaderMsgID       = "Nats-Msg-Id"
)

// ContentTypeCloudEvents marks a structured-mode CloudEvent body.
const ContentTypeCloudEvents = "application/cloudevents+json"

// ToMsg encodes e as a NATS message on subject in binary content mode. Use
// e.NATSSubject() as subject for facts. It returns ErrMalformed when e
// breaks the CloudEvents rules.
func ToMsg(subject string, e Event) (*nats.Msg, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	h := make(nats.Header, 11)
	// Set the map directly: nats.Header.Set would canonicalise the
	// lower-case ce- names the binding requires.
	h[HeaderSpecVersion] = []string{SpecVersion}
	h[HeaderID] = []string{e.ID}
	h[HeaderType] = []string{string(e.Type)}
	h[HeaderSource] = []string{e.Source}
	if e.Subject != "" {
		h[HeaderSubject] = []string{e.Subject}
	}
	if !e.Time.IsZero() {
		h[HeaderTime] = []string{e.Time.UTC().Format(time.RFC3339Nano)}
	}
	if e.DataSchema != "" {
		h[HeaderDataSchema] = []string{e.DataSchema}
	}
	if e.TraceParent != "" {
		h[HeaderTraceParent] = []string{e.TraceParent}
		if e.TraceState != "" {
			h[HeaderTraceState] = []string{e.TraceState}
		}
	}
	h[HeaderContentType] = []string{ContentTypeJSON}
	h[HeaderMsgID] = []string{e.ID}
	return &nats.Msg{Subject: subject, Header: h, Data: e.Data}, nil
}

// Validate checks e against the CloudEvents 1.0 rules (using the sdk-go
// envelope validation) and that its data is JSON. It returns ErrMalformed
// wrapping the first problem.
func (e Event) Validate() error {
	if err := e.CloudEvent().Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return fmt.Errorf("%w: data is not JSON", ErrMalformed)
	}
	return nil
}

// CloudEvent returns e as an sdk-go event, for structured-mode JSON and for
// any other CloudEvents tooling.
func (e Event) CloudEvent() ce.Event {
	c := ce.New(SpecVersion)
	c.SetID(e.ID)
	c.SetType(string(e.Type))
	c.SetSource(e.Source)
	if e.Subject != "" {
		c.SetSubject(e.Subject)
	}
	if !e.Time.IsZero() {
		c.SetTime(e.Time)
	}
	if e.DataSchema != "" {
		c.SetDataSchema(e.DataSchema)
	}
	if len(e.Data) > 0 {
		c.SetDataContentType(ContentTypeJSON)
		c.DataEncoded = e.Data
	}
	if e.TraceParent != "" {
		c.SetExtension(extTraceParent, e.TraceParent)
		if e.TraceState != "" {
			c.SetExtension(extTraceState, e.TraceState)
		}
	}
	return c
}

// The Distributed Tracing extension's attribute names.
const (
	extTraceParent = "traceparent"
	extTraceState  = "tracestate"
)

// FromCloudEvent converts an sdk-go event whose data is JSON.
func FromCloudEvent(c ce.Event) (Event, error) {
	if err := c.Validate(); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	if c.SpecVersion() != SpecVersion {
		return Event{}, fmt.Errorf("%w: specversion %q", ErrMalformed, c.SpecVersion())
	}
	if ct := c.DataContentType(); ct != "" && !isJSON(ct) {
		return Event{}, fmt.Errorf("%w: datacontenttype %q is not JSON", ErrMalformed, ct)
	}
	data := c.Data()
	if len(data) > 0 && !json.Valid(data) {
		return Event{}, fmt.Errorf("%w: data is not JSON", ErrMalformed)
	}
	e := Event{
		ID:         c.ID(),
		Type:       Type(c.Type()),
		Source:     c.Source(),
		Subject:    c.Subject(),
		Time:       c.Time(),
		DataSchema: c.DataSchema(),
		Data:       json.RawMessage(data),
	}
	e.TraceParent, _ = c.Extensions()[extTraceParent].(string)
	e.TraceState, _ = c.Extensions()[extTraceState].(string)
	e.cleanTrace()
	return e, nil
}

// FromMsg decodes a CloudEvent from a NATS message in binary content mode
// (ce- headers), or in structured mode (content-type
// application/cloudevents+json, the whole event as the JSON body). It
// checks the envelope only; the type may be unknown (check Type.Known).
// It returns ErrTooLarge or ErrMalformed, and ErrMsgIDMismatch for a
// message with a Nats-Msg-Id header (under any case, any of its values)
// that is not the event's ce-id.
func FromMsg(m *nats.Msg) (Event, error) {
	if size := len(m.Data) + headerSize(m.Header); size > MaxEventSize {
		return Event{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	var e Event
	var err error
	if hv := header(m.Header, HeaderSpecVersion); hv != "" {
		e, err = fromBinary(m)
	} else if ct := header(m.Header, HeaderContentType); ct == "" || strings.HasPrefix(strings.ToLower(ct), ContentTypeCloudEvents) {
		e, err = FromStructured(m.Data)
	} else {
		return Event{}, fmt.Errorf("%w: no ce-specversion header and content-type %q is not %s", ErrMalformed, ct, ContentTypeCloudEvents)
	}
	if err != nil {
		return Event{}, err
	}
	if err := checkMsgID(m.Header, e.ID); err != nil {
		return Event{}, err
	}
	return e, nil
}

// checkMsgID returns ErrMsgIDMismatch when h has a Nats-Msg-Id header,
// under any case, with a value other than id. When several do, it names
// the exact name first, then the smallest other name, so that the error
// is the same for the same message.
func checkMsgID(h nats.Header, id string) error {
	for _, v := range h[HeaderMsgID] {
		if v != id {
			return msgIDMismatch(id, HeaderMsgID, v)
		}
	}
	name, value := "", ""
	for k, vs := range h {
		if len(k) != len(HeaderMsgID) || k == HeaderMsgID || !strings.EqualFold(k, HeaderMsgID) {
			continue
		}
		for _, v := range vs {
			if v != id && (name == "" || k < name) {
				name, value = k, v
				break
			}
		}
	}
	if name != "" {
		return msgIDMismatch(id, name, value)
	}
	return nil
}

func msgIDMismatch(id, name, value string) error {
	return fmt.Errorf("%w: ce-id %q, %s %q", ErrMsgIDMismatch, id, name, value)
}

// FromStructured decodes one structured-mode CloudEvent JSON object.
func FromStructured(b []byte) (Event, error) {
	if len(b) > MaxEventSize {
		return Event{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	var c ce.Event
	if err := json.Unmarshal(b, &c); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	return FromCloudEvent(c)
}

func fromBinary(m *nats.Msg) (Event, error) {
	if v := header(m.Header, HeaderSpecVersion); v != SpecVersion {
		return Event{}, fmt.Errorf("%w: specversion %q", ErrMalformed, v)
	}
	if ct := header(m.Header, HeaderContentType); ct != "" && !isJSON(ct) {
		return Event{}, fmt.Errorf("%w: content-type %q is not JSON", ErrMalformed, ct)
	}
	e := Event{
		ID:         header(m.Header, HeaderID),
		Type:       Type(header(m.Header, HeaderType)),
		Source:     header(m.Header, HeaderSource),
		Subject:    header(m.Header, HeaderSubject),
		DataSchema: header(m.Header, HeaderDataSchema),
		Data:       json.RawMessage(m.Data),
		// A malformed trace context is dropped, never an error.
		TraceParent: header(m.Header, HeaderTraceParent),
		TraceState:  header(m.Header, HeaderTraceState),
	}
	e.cleanTrace()
	if t := header(m.Header, HeaderTime); t != "" {
		tm, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return Event{}, fmt.Errorf("%w: ce-time %q is not RFC 3339", ErrMalformed, t)
		}
		e.Time = tm.UTC()
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// header reads a header by its exact name, then case-insensitively, since
// some clients canonicalise header names (Ce-Id).
func header(h nats.Header, name string) string {
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

func headerSize(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") && mt != ContentTypeCloudEvents
}
