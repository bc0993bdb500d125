package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// FuzzEncode holds the encoder to two promises for any stream message:
// the fast path accepts only what events.FromMsg accepts, and decodes it
// the same way; and every line written is an intact audit line that the
// CloudEvents SDK reads.
func FuzzEncode(f *testing.F) {
	for _, m := range sampleMsgs(f) {
		h := m.Header
		f.Add(h.Get(events.HeaderSpecVersion), h.Get(events.HeaderID), h.Get(events.HeaderType), h.Get(events.HeaderSource),
			h.Get(events.HeaderSubject), h.Get(events.HeaderTime), h.Get(events.HeaderDataSchema), h.Get(events.HeaderContentType), "", m.Data)
	}
	f.Add("1.0", " id", "t", "/s", "  ", "2026-11-28T10:00:00+02:00", "rel/schema", "application/json; charset=utf-8", "ce-Ext", []byte(`{"a":"\u00e9\n"}`))
	f.Add("", "", "", "", "", "", "", "application/cloudevents+json", "", []byte(`{"specversion":"1.0","id":"1","source":"/x","type":"t","ext1":"v","data":{"a":1}}`))
	f.Add("1.0", "i", "io.sessionbus.audit.gap.v1", "/x", "", "", "", "", "ce-chainhash", []byte(`{}`))
	f.Add("1.0", "i\"\\", "t", "%zz", "s", "bad", "http://x/y", "text/plain", "Ce-Id", []byte("\xff"))
	f.Fuzz(func(t *testing.T, spec, id, typ, src, subj, tm, schema, ct, extra string, data []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{
			events.HeaderSpecVersion: spec, events.HeaderID: id, events.HeaderType: typ, events.HeaderSource: src,
			events.HeaderSubject: subj, events.HeaderTime: tm, events.HeaderDataSchema: schema, events.HeaderContentType: ct,
		} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		if extra != "" {
			h[extra] = []string{id}
		}
		enc := newEncoder(events.StreamName)
		// Make src and schema known good the way production does: a
		// valid message carrying them went through events.FromMsg first.
		warm := nats.Header{events.HeaderSpecVersion: {"1.0"}, events.HeaderID: {"w"}, events.HeaderType: {"t"}, events.HeaderSource: {src}}
		if schema != "" {
			warm[events.HeaderDataSchema] = []string{schema}
		}
		enc.decodeSlow(&stored{Header: warm})

		if got, ok := enc.decodeFast(h, data); ok {
			want, err := events.FromMsg(&nats.Msg{Subject: "auth.events.x.y.z", Header: h, Data: data})
			if err != nil {
				t.Fatalf("fast path accepted what FromMsg refuses: %v", err)
			}
			if got.ID != want.ID || got.Type != want.Type || got.Source != want.Source || got.Subject != want.Subject ||
				!got.Time.Equal(want.Time) || got.DataSchema != want.DataSchema || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("fast path %+v, FromMsg %+v", got, want)
			}
		}
		m := &stored{Seq: 42, Subject: "auth.events.x.y.z", Header: h, Data: data}
		body, _, _ := enc.appendBody(nil, m)
		part := uint64(0)
		line, hash := completeLine(nil, body, events.StreamName, &part, "from=1", []byte(Genesis))
		line = line[:len(line)-1]
		if bytes.IndexByte(line, '\n') >= 0 || !utf8.Valid(line) {
			t.Fatalf("line is not one UTF-8 line: %q", line)
		}
		l, err := ParseLine(line)
		if err != nil {
			t.Fatalf("line does not parse: %v\n%s", err, line)
		}
		if !l.HashOK() || l.ChainHash != string(hash) || l.Seq != 42 || l.Head == nil {
			t.Fatalf("line %s", line)
		}
		var c ce.Event
		if err := json.Unmarshal(line, &c); err != nil || c.Validate() != nil {
			t.Fatalf("sdk: %v", err)
		}
	})
}

// FuzzParseLine feeds anything to the line parser: it must not panic, and
// what it accepts has a chainhash it can check.
func FuzzParseLine(f *testing.F) {
	enc := newEncoder(events.StreamName)
	for i, m := range sampleMsgs(f) {
		body, _, _ := enc.appendBody(nil, &m)
		var part *uint64
		if i == 0 {
			part = new(uint64)
		}
		line, _ := completeLine(nil, body, events.StreamName, part, "from=1&type=t", []byte(Genesis))
		f.Add(line[:len(line)-1])
	}
	f.Add(appendGap(nil, events.StreamName, 1, 5))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/x","type":"t","streamseq":"1","prevhash":"` + Genesis + `","chainhash":"` + Genesis + `"}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLine(b)
		if err != nil {
			return
		}
		_ = l.HashOK()
		if l.Seq == 0 || l.FirstSeq > l.Seq || !isHash(l.PrevHash) || !isHash(l.ChainHash) {
			t.Fatalf("accepted %+v", l)
		}
	})
}
