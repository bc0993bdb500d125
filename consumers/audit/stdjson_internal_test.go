package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// stdEncoder writes the same lines as encoder with encoding/json and
// events.FromMsg only: no fast path, no hand-written JSON validator or
// string encoder. It exists to measure what they buy (BenchmarkEncodeLine).
type stdEncoder struct {
	enc *encoder // for decodeSlow: events.FromMsg and the extensions
	buf bytes.Buffer
	je  *json.Encoder
}

func newStdEncoder(stream string) *stdEncoder {
	s := &stdEncoder{enc: newEncoder(stream)}
	s.je = json.NewEncoder(&s.buf)
	s.je.SetEscapeHTML(false)
	return s
}

func (s *stdEncoder) str(dst []byte, v string) []byte {
	s.buf.Reset()
	_ = s.je.Encode(v)
	b := s.buf.Bytes()
	return append(dst, b[:len(b)-1]...) // without Encode's newline
}

func (s *stdEncoder) appendBody(dst []byte, m *stored) ([]byte, kind, string) {
	e, exts, reason, mismatch := s.enc.decodeSlow(m)
	switch {
	case reason != "":
	case strings.HasPrefix(string(e.Type), typePrefix):
		reason = "type " + strconv.Quote(string(e.Type)) + " is reserved for audit lines"
	case !utf8Valid(e.ID, e.Source, string(e.Type), e.Subject, e.DataSchema):
		reason = "an attribute is not valid UTF-8"
	case !utf8Valid(string(e.Data)):
		reason = "data is not valid UTF-8"
	}
	if reason != "" {
		k := kindUnreadable
		if mismatch {
			k = kindMsgIDMismatch
		}
		return s.enc.appendUnreadable(dst, m, reason), k, TypeUnreadable
	}
	k := kindFact
	if !e.Type.Known() {
		k = kindForeign
	}
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = s.str(dst, e.ID)
	dst = append(dst, `,"source":`...)
	dst = s.str(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = s.str(dst, string(e.Type))
	if e.Subject != "" {
		dst = append(dst, `,"subject":`...)
		dst = s.str(dst, e.Subject)
	}
	if !e.Time.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if e.DataSchema != "" {
		dst = append(dst, `,"dataschema":`...)
		dst = s.str(dst, e.DataSchema)
	}
	if len(e.Data) > 0 {
		dst = append(dst, `,"datacontenttype":"application/json"`...)
	}
	for _, x := range exts {
		dst = append(dst, ',')
		dst = s.str(dst, x.name)
		dst = append(dst, ':')
		dst = s.str(dst, x.value)
	}
	dst = append(dst, `,"streamseq":"`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, `","streamtime":"`...)
	dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","natssubject":`...)
	dst = s.str(dst, strings.ToValidUTF8(m.Subject, "\uFFFD"))
	if len(e.Data) > 0 {
		dst = append(dst, `,"data":`...)
		s.buf.Reset()
		_ = json.Compact(&s.buf, e.Data)
		dst = append(dst, s.buf.Bytes()...)
	}
	return dst, k, string(e.Type)
}

func utf8Valid(ss ...string) bool {
	for _, s := range ss {
		if strings.ToValidUTF8(s, "") != s {
			return false
		}
	}
	return true
}

// TestStdEncoderWritesTheSameLines keeps the comparison honest: the
// encoding/json encoder writes the same bytes for the sample facts, the
// foreign, unreadable and forged messages of the tests.
func TestStdEncoderWritesTheSameLines(t *testing.T) {
	msgs := sampleMsgs(t)
	odd := []stored{
		{Seq: 20, Subject: "auth.events.thing.done.F1", Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"F1"}, "ce-type": {"com.example.thing.v1"},
			"ce-source": {"/elsewhere"}, "ce-traceparent": {"00-abc-def-01"}, "content-type": {"application/json"}}, Data: []byte("{\"a\": 1,\n \"b\": [true, null]}")},
		{Seq: 21, Subject: "auth.events.junk.plain.X1", Data: []byte("not a cloudevent \x00\xff")},
		{Seq: 22, Subject: "auth.events.audit.gap.G1", Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"G1"}, "ce-type": {TypeGap}, "ce-source": {"/x"}}, Data: []byte(`{}`)},
	}
	forged := msgs[2]
	forged.Seq, forged.Header = 23, nats.Header{}
	for k, v := range msgs[2].Header {
		forged.Header[k] = v
	}
	forged.Header[events.HeaderMsgID] = []string{"other"}
	hand, std := newEncoder(events.StreamName), newStdEncoder(events.StreamName)
	for _, m := range append(append(msgs, odd...), forged) {
		want, wk, wt := hand.appendBody(nil, &m)
		got, gk, gt := std.appendBody(nil, &m)
		if !bytes.Equal(got, want) || gk != wk || gt != wt {
			t.Errorf("seq %d:\n got %s (%v %s)\nwant %s (%v %s)", m.Seq, got, gk, gt, want, wk, wt)
		}
	}
}
