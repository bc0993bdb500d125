package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// stored is one message as read from the stream.
type stored struct {
	Seq     uint64
	Time    time.Time // when the stream stored it
	Subject string
	Header  nats.Header
	Data    []byte
}

// kind classifies a line, for the counters.
type kind uint8

const (
	kindFact       kind = iota // a known sessionbus fact
	kindForeign                // a valid CloudEvent of a type this version does not know
	kindUnreadable             // not copyable as a CloudEvent: TypeUnreadable
	kindGap                    // TypeGap
	// kindMsgIDMismatch is a TypeUnreadable line for a message whose
	// Nats-Msg-Id is not its ce-id (events.ErrMsgIDMismatch).
	kindMsgIDMismatch
)

// ext is an extension attribute copied from a stream message.
type ext struct{ name, value string }

// maxGoodURIs bounds the cache of validated sources and dataschemas.
const maxGoodURIs = 1024

// encoder turns stream messages into the body of an audit line: the JSON
// object up to and including "data", without its closing brace. It is not
// safe for concurrent use.
type encoder struct {
	stream string
	// good holds sources and dataschemas that events.FromMsg accepted:
	// the fast path decodes only messages whose URIs are known good, so
	// that it accepts exactly what events.FromMsg accepts.
	good    map[string]struct{}
	scratch bytes.Buffer
}

func newEncoder(stream string) *encoder {
	return &encoder{stream: stream, good: make(map[string]struct{})}
}

// bodyEncoder turns stream messages into line bodies, as encoder does.
type bodyEncoder interface {
	appendBody(dst []byte, m *stored) ([]byte, kind, string)
}

// newBodyEncoder makes the encoder of replay and follow; the benchmarks
// swap it to compare encoders side by side.
var newBodyEncoder = func(stream string) bodyEncoder { return newEncoder(stream) }

// appendBody appends the body of the line of m to dst, and returns the
// line's kind and CloudEvent type.
func (enc *encoder) appendBody(dst []byte, m *stored) ([]byte, kind, string) {
	e, exts, reason, mismatch := enc.decode(m)
	if reason != "" {
		k := kindUnreadable
		if mismatch {
			k = kindMsgIDMismatch
		}
		return enc.appendUnreadable(dst, m, reason), k, TypeUnreadable
	}
	k := kindFact
	if !events.Type(e.Type).Known() {
		k = kindForeign
	}
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, string(e.Type))
	if e.Subject != "" {
		dst = append(dst, `,"subject":`...)
		dst = appendString(dst, e.Subject)
	}
	if !e.Time.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if e.DataSchema != "" {
		dst = append(dst, `,"dataschema":`...)
		dst = appendString(dst, e.DataSchema)
	}
	if len(e.Data) > 0 {
		dst = append(dst, `,"datacontenttype":"application/json"`...)
	}
	for _, x := range exts {
		dst = append(dst, ',', '"')
		dst = append(dst, x.name...)
		dst = append(dst, '"', ':')
		dst = appendString(dst, x.value)
	}
	dst = enc.appendStreamAttrs(dst, m)
	if len(e.Data) > 0 {
		dst = append(dst, `,"data":`...)
		if bytes.IndexByte(e.Data, '\n') >= 0 || bytes.IndexByte(e.Data, '\r') >= 0 {
			// Whitespace only (JSON strings cannot hold raw newlines):
			// compact it so that the line stays one line.
			enc.scratch.Reset()
			_ = json.Compact(&enc.scratch, e.Data)
			dst = append(dst, enc.scratch.Bytes()...)
		} else {
			dst = append(dst, e.Data...)
		}
	}
	return dst, k, string(e.Type)
}

func (enc *encoder) appendStreamAttrs(dst []byte, m *stored) []byte {
	dst = append(dst, `,"streamseq":"`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, `","streamtime":"`...)
	dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","natssubject":`...)
	return appendString(dst, strings.ToValidUTF8(m.Subject, "\uFFFD"))
}

// appendUnreadable appends the body of a TypeUnreadable line for m.
func (enc *encoder) appendUnreadable(dst []byte, m *stored, reason string) []byte {
	dst = append(dst, `{"specversion":"1.0","id":"`...)
	dst = append(dst, enc.stream...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, `","source":"`+Source+`","type":"`+TypeUnreadable+`","time":"`...)
	dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","datacontenttype":"application/json"`...)
	dst = enc.appendStreamAttrs(dst, m)
	data, err := json.Marshal(UnreadableData{Reason: reason, Headers: m.Header, Body: m.Data})
	if err != nil { // cannot happen: strings, slices of strings and bytes
		data = []byte(`{"reason":"unencodable"}`)
	}
	dst = append(dst, `,"data":`...)
	return append(dst, data...)
}

// appendGap appends the body of a TypeGap line for sequences first..last.
func appendGap(dst []byte, stream string, first, last uint64) []byte {
	dst = append(dst, `{"specversion":"1.0","id":"`...)
	dst = append(dst, stream...)
	dst = append(dst, `-gap-`...)
	dst = strconv.AppendUint(dst, first, 10)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, last, 10)
	dst = append(dst, `","source":"`+Source+`","type":"`+TypeGap+`","datacontenttype":"application/json","streamseq":"`...)
	dst = strconv.AppendUint(dst, last, 10)
	dst = append(dst, `","data":{"first_seq":`...)
	dst = strconv.AppendUint(dst, first, 10)
	dst = append(dst, `,"last_seq":`...)
	dst = strconv.AppendUint(dst, last, 10)
	dst = append(dst, `,"reason":"`+gapReason+`"}`...)
	return dst
}

// decode reads m as events.FromMsg does, plus its extension attributes.
// A non-empty reason means m is to be written as unreadable; mismatch
// says that the reason is events.ErrMsgIDMismatch.
func (enc *encoder) decode(m *stored) (e events.Event, exts []ext, reason string, mismatch bool) {
	e, ok := enc.decodeFast(m.Header, m.Data)
	if !ok {
		if e, exts, reason, mismatch = enc.decodeSlow(m); reason != "" {
			return e, nil, reason, mismatch
		}
	}
	if strings.HasPrefix(string(e.Type), typePrefix) {
		return e, nil, "type " + strconv.Quote(string(e.Type)) + " is reserved for audit lines", false
	}
	if !utf8.ValidString(e.ID) || !utf8.ValidString(e.Source) || !utf8.ValidString(string(e.Type)) ||
		!utf8.ValidString(e.Subject) || !utf8.ValidString(e.DataSchema) {
		return e, nil, "an attribute is not valid UTF-8", false
	}
	if !utf8.Valid(e.Data) {
		return e, nil, "data is not valid UTF-8", false
	}
	return e, exts, "", false
}

// isFastHeader reports whether the fast path knows the header name k.
func isFastHeader(k string) bool {
	switch k {
	case events.HeaderSpecVersion, events.HeaderID, events.HeaderType, events.HeaderSource,
		events.HeaderSubject, events.HeaderTime, events.HeaderDataSchema, events.HeaderContentType:
		return true
	}
	return false
}

// header returns the first value of the header named exactly name, and
// adds what events.FromMsg counts of its size to *size.
func header(h nats.Header, name string, size *int, found *int) string {
	vs, ok := h[name]
	if !ok {
		return ""
	}
	*found++
	for _, v := range vs {
		*size += len(name) + len(v) + 4
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// decodeFast decodes the common case, a binary-mode fact with the
// attributes events.ToMsg writes, without building an sdk-go event. It
// reports false whenever it is not sure; then events.FromMsg decides. When
// it reports true, events.FromMsg would have returned the same Event (a
// fuzz test holds it to that).
func (enc *encoder) decodeFast(h nats.Header, data []byte) (events.Event, bool) {
	size, found := len(data), 0
	spec := header(h, events.HeaderSpecVersion, &size, &found)
	ct := header(h, events.HeaderContentType, &size, &found)
	e := events.Event{
		ID:         header(h, events.HeaderID, &size, &found),
		Type:       events.Type(header(h, events.HeaderType, &size, &found)),
		Source:     header(h, events.HeaderSource, &size, &found),
		Subject:    header(h, events.HeaderSubject, &size, &found),
		DataSchema: header(h, events.HeaderDataSchema, &size, &found),
		Data:       data,
	}
	tm := header(h, events.HeaderTime, &size, &found)
	header(h, events.HeaderMsgID, &size, &found)
	for _, v := range h[events.HeaderMsgID] {
		if v != e.ID {
			return events.Event{}, false // events.ErrMsgIDMismatch
		}
	}
	if found != len(h) {
		// Other headers: count them, and leave extensions (any other ce-
		// header) and differently cased names to the slow path.
		for k, vs := range h {
			if isFastHeader(k) || k == events.HeaderMsgID {
				continue
			}
			for _, v := range vs {
				size += len(k) + len(v) + 4
			}
			if len(k) >= 3 && k[0]|0x20 == 'c' && k[1]|0x20 == 'e' && k[2] == '-' ||
				len(k) == len(events.HeaderContentType) && strings.EqualFold(k, events.HeaderContentType) ||
				len(k) == len(events.HeaderMsgID) && strings.EqualFold(k, events.HeaderMsgID) {
				return events.Event{}, false
			}
		}
	}
	if size > events.MaxEventSize || spec != events.SpecVersion || (ct != "" && ct != events.ContentTypeJSON) {
		return events.Event{}, false
	}
	if !plain(e.ID) || !plain(string(e.Type)) || (e.Subject != "" && !plain(e.Subject)) {
		return events.Event{}, false
	}
	if _, ok := enc.good[e.Source]; !ok {
		return events.Event{}, false
	}
	if e.DataSchema != "" {
		if _, ok := enc.good[e.DataSchema]; !ok {
			return events.Event{}, false
		}
	}
	if tm != "" {
		t, err := time.Parse(time.RFC3339Nano, tm)
		if err != nil {
			return events.Event{}, false
		}
		e.Time = t.UTC()
	}
	if len(data) > 0 && !validJSON(data) {
		return events.Event{}, false
	}
	return e, true
}

// plain reports whether s is non-empty printable ASCII without leading or
// trailing space: a value the CloudEvents rules accept as it is.
func plain(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Attribute names a stream message may not use as extensions: the
// CloudEvents core attributes and the audit's own.
var reservedAttrs = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true,
	"time": true, "dataschema": true, "datacontenttype": true, "data": true, "data_base64": true,
	AttrStreamSeq: true, AttrStreamTime: true, AttrNATSSubject: true, AttrFormat: true,
	AttrStream: true, AttrPart: true, AttrFilter: true, AttrPrevHash: true, AttrChainHash: true,
}

// decodeSlow decodes m with events.FromMsg and collects its extension
// attributes, or returns why it cannot be copied (and whether that is
// events.ErrMsgIDMismatch).
func (enc *encoder) decodeSlow(m *stored) (events.Event, []ext, string, bool) {
	e, err := events.FromMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil {
		// sdk-go lists validation problems in map order: sort them so that
		// the same message always gives the same line.
		parts := strings.Split(err.Error(), "\n")
		slices.Sort(parts)
		return e, nil, strings.Join(parts, "; "), errors.Is(err, events.ErrMsgIDMismatch)
	}
	var exts []ext
	seen := map[string]bool{}
	add := func(name, value string) string {
		if !validExtName(name) {
			return "extension attribute name " + strconv.Quote(name) + " is not lowercase a-z0-9 of at most 20 characters"
		}
		if reservedAttrs[name] {
			return "extension attribute " + strconv.Quote(name) + " is reserved"
		}
		if seen[name] {
			return "extension attribute " + strconv.Quote(name) + " appears twice"
		}
		seen[name] = true
		exts = append(exts, ext{name, value})
		return ""
	}
	if first(m.Header, events.HeaderSpecVersion) != "" {
		for k, vs := range m.Header {
			lk := strings.ToLower(k)
			if !strings.HasPrefix(lk, "ce-") || isFastHeader(lk) || len(vs) == 0 {
				continue
			}
			if r := add(lk[3:], vs[0]); r != "" {
				return e, nil, r, false
			}
		}
	} else {
		var c ce.Event
		if err := json.Unmarshal(m.Data, &c); err == nil {
			for name, v := range c.Extensions() {
				s, err := types.Format(v)
				if err != nil {
					return e, nil, "extension attribute " + strconv.Quote(name) + ": " + err.Error(), false
				}
				if r := add(name, s); r != "" {
					return e, nil, r, false
				}
			}
		}
	}
	slices.SortFunc(exts, func(a, b ext) int { return strings.Compare(a.name, b.name) })
	for _, x := range exts {
		if !utf8.ValidString(x.value) {
			return e, nil, "extension attribute " + strconv.Quote(x.name) + " is not valid UTF-8", false
		}
	}
	if len(enc.good) < maxGoodURIs {
		enc.good[e.Source] = struct{}{}
		if e.DataSchema != "" {
			enc.good[e.DataSchema] = struct{}{}
		}
	}
	return e, exts, "", false
}

func first(h nats.Header, name string) string {
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			return vs[0]
		}
	}
	return ""
}

// validExtName reports whether name is a CloudEvents extension attribute
// name: lowercase a-z and 0-9, 1 to 20 characters.
func validExtName(name string) bool {
	if name == "" || len(name) > 20 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// appendString appends s, valid UTF-8, as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
