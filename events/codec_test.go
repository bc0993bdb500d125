package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

func sampleEvent(t testing.TB) events.Event {
	t.Helper()
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	e, err := events.New(events.TypeSessionRevoked, events.Source("test"), "01JDA0000000000000000000AB", at,
		events.SessionRevoked{SessionID: "01JDA0000000000000000000AB", UserID: "u1", Reason: events.ReasonLogout, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestBinaryModeRoundTrip(t *testing.T) {
	e := sampleEvent(t)
	m, err := events.ToMsg(e.NATSSubject(), e)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "auth.events.session.revoked.01JDA0000000000000000000AB" {
		t.Fatalf("subject = %q", m.Subject)
	}
	for h, want := range map[string]string{
		"ce-specversion": "1.0",
		"ce-id":          e.ID,
		"ce-type":        "io.sessionbus.session.revoked.v1",
		"ce-source":      "/sessionbus/test",
		"ce-subject":     "01JDA0000000000000000000AB",
		"ce-time":        "2026-11-28T10:00:00Z",
		"ce-dataschema":  "https://sessionbus.io/schemas/session.revoked.v1.json",
		"content-type":   "application/json",
		"Nats-Msg-Id":    e.ID,
	} {
		if got := m.Header[h]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %v, want %q", h, got, want)
		}
	}
	got, err := events.FromMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Type != e.Type || !got.Time.Equal(e.Time) || string(got.Data) != string(e.Data) || got.Subject != e.Subject {
		t.Fatalf("round trip: got %+v, want %+v", got, e)
	}
	d, err := got.DecodeData()
	if err != nil {
		t.Fatal(err)
	}
	if r := d.(*events.SessionRevoked); r.Reason != events.ReasonLogout || !r.DenyUntil.Equal(e.Time.Add(5*time.Minute)) {
		t.Fatalf("data = %+v", r)
	}
}

func TestStructuredMode(t *testing.T) {
	e := sampleEvent(t)
	b, err := json.Marshal(e.CloudEvent())
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: "x", Header: nats.Header{"content-type": {events.ContentTypeCloudEvents}}, Data: b}
	got, err := events.FromMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || string(got.Data) != string(e.Data) {
		t.Fatalf("got %+v", got)
	}
	// No content-type at all: still structured.
	if _, err := events.FromMsg(&nats.Msg{Data: b}); err != nil {
		t.Fatal(err)
	}
}

func TestFromMsgRejects(t *testing.T) {
	good := func() *nats.Msg {
		m, err := events.ToMsg("s", sampleEvent(t))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name    string
		mutate  func(*nats.Msg)
		wantErr error
	}{
		{"no id", func(m *nats.Msg) { delete(m.Header, "ce-id") }, events.ErrMalformed},
		{"no source", func(m *nats.Msg) { delete(m.Header, "ce-source") }, events.ErrMalformed},
		{"no type", func(m *nats.Msg) { delete(m.Header, "ce-type") }, events.ErrMalformed},
		{"spec 0.3", func(m *nats.Msg) { m.Header["ce-specversion"] = []string{"0.3"} }, events.ErrMalformed},
		{"bad time", func(m *nats.Msg) { m.Header["ce-time"] = []string{"yesterday"} }, events.ErrMalformed},
		{"xml", func(m *nats.Msg) { m.Header["content-type"] = []string{"application/xml"} }, events.ErrMalformed},
		{"data not json", func(m *nats.Msg) { m.Data = []byte("{nope") }, events.ErrMalformed},
		{"huge", func(m *nats.Msg) { m.Data = []byte(`"` + strings.Repeat("a", events.MaxEventSize) + `"`) }, events.ErrTooLarge},
		{"plain text body", func(m *nats.Msg) { m.Header = nats.Header{"content-type": {"text/plain"}} }, events.ErrMalformed},
		{"structured garbage", func(m *nats.Msg) { m.Header = nil; m.Data = []byte("{]") }, events.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.mutate(m)
			if _, err := events.FromMsg(m); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestUnknownTypeIsReadableButNotDecodable(t *testing.T) {
	m, err := events.ToMsg("s", sampleEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	m.Header["ce-type"] = []string{"io.sessionbus.session.revoked.v9"}
	e, err := events.FromMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type.Known() {
		t.Fatal("v9 known")
	}
	if _, err := e.DecodeData(); !errors.Is(err, events.ErrUnknownType) {
		t.Fatalf("err = %v", err)
	}
}

func TestSubjects(t *testing.T) {
	for _, typ := range events.Types() {
		s := typ.Subject("abc")
		agg, act, id, ok := events.ParseSubject(s)
		if !ok || id != "abc" || !strings.Contains(string(typ), "."+agg+"."+act+".") {
			t.Errorf("%s: subject %q parsed to %q %q %q %v", typ, s, agg, act, id, ok)
		}
		if typ.IsRevocation() != strings.HasSuffix(act, "revoked") {
			t.Errorf("%s: IsRevocation wrong", typ)
		}
	}
	for _, bad := range []string{"", "a.b", "a*", "a>", "a b", strings.Repeat("x", 129), "user@example.com"} {
		if events.ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
		if events.TypeSessionCreated.Subject(bad) != "" {
			t.Errorf("Subject(%q) not empty", bad)
		}
	}
}

func FuzzFromMsg(f *testing.F) {
	e := sampleEvent(f)
	b, _ := json.Marshal(e.CloudEvent())
	f.Add([]byte("1.0"), []byte(e.ID), []byte(e.Type), []byte(e.Data), b)
	f.Add([]byte(""), []byte(""), []byte(""), []byte("{}"), []byte("{]"))
	f.Fuzz(func(t *testing.T, spec, id, typ, data, structured []byte) {
		m := &nats.Msg{Header: nats.Header{
			"ce-specversion": {string(spec)}, "ce-id": {string(id)}, "ce-type": {string(typ)},
			"ce-source": {"/x"}, "content-type": {"application/json"},
		}, Data: data}
		if ev, err := events.FromMsg(m); err == nil {
			if ev.ID == "" || ev.Type == "" {
				t.Fatalf("accepted event without id or type: %+v", ev)
			}
			_, _ = ev.DecodeData()
		}
		if ev, err := events.FromStructured(structured); err == nil {
			if ev.ID == "" || ev.Type == "" || ev.Source == "" {
				t.Fatalf("accepted event without id/type/source: %+v", ev)
			}
		}
	})
}

func TestMsgIDMismatch(t *testing.T) {
	e := sampleEvent(t)
	binary := func(t *testing.T) *nats.Msg {
		t.Helper()
		m, err := events.ToMsg(e.NATSSubject(), e)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	structured := func(t *testing.T) *nats.Msg {
		t.Helper()
		b, err := json.Marshal(e.CloudEvent())
		if err != nil {
			t.Fatal(err)
		}
		return &nats.Msg{Subject: e.NATSSubject(), Header: nats.Header{"content-type": {events.ContentTypeCloudEvents}}, Data: b}
	}
	for _, tc := range []struct {
		name     string
		msg      func(*testing.T) *nats.Msg
		edit     func(nats.Header)
		mismatch bool
	}{
		{"binary, as published", binary, func(nats.Header) {}, false},
		{"binary, without Nats-Msg-Id", binary, func(h nats.Header) { delete(h, events.HeaderMsgID) }, false},
		{"binary, another Nats-Msg-Id", binary, func(h nats.Header) { h[events.HeaderMsgID] = []string{"01JDA0000000000000000000ZZ"} }, true},
		{"binary, an empty Nats-Msg-Id", binary, func(h nats.Header) { h[events.HeaderMsgID] = []string{""} }, true},
		{"binary, a second value", binary, func(h nats.Header) { h[events.HeaderMsgID] = append(h[events.HeaderMsgID], "other") }, true},
		{"binary, another one under another case", binary, func(h nats.Header) { h["nats-msg-id"] = []string{"other"} }, true},
		{"binary, the same under another case", binary, func(h nats.Header) {
			delete(h, events.HeaderMsgID)
			h["NATS-MSG-ID"] = []string{e.ID}
		}, false},
		{"structured, the same", structured, func(h nats.Header) { h[events.HeaderMsgID] = []string{e.ID} }, false},
		{"structured, another", structured, func(h nats.Header) { h[events.HeaderMsgID] = []string{"other"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg(t)
			tc.edit(m.Header)
			got, err := events.FromMsg(m)
			if !tc.mismatch {
				if err != nil || got.ID != e.ID {
					t.Fatalf("FromMsg: %+v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, events.ErrMsgIDMismatch) || !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("FromMsg: %v, want ErrMsgIDMismatch (and ErrMalformed)", err)
			}
			if got.ID != "" {
				t.Errorf("FromMsg returned the event %+v with the error", got)
			}
			if !strings.Contains(err.Error(), e.ID) {
				t.Errorf("error %q does not name the ce-id", err)
			}
		})
	}
	// A malformed message stays malformed, not a mismatch.
	m := binary(t)
	m.Header[events.HeaderMsgID] = []string{"other"}
	m.Data = []byte(`{"truncated":`)
	if _, err := events.FromMsg(m); !errors.Is(err, events.ErrMalformed) || errors.Is(err, events.ErrMsgIDMismatch) {
		t.Errorf("malformed with another Nats-Msg-Id: %v, want ErrMalformed only", err)
	}
}
