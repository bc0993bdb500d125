package natsapi_test

import (
	"bytes"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// FuzzLoginCommand sends arbitrary bodies to auth.cmd.login, as the whole
// request (structured mode) or as the data of a binary-mode login
// CloudEvent. Every reply is an error with a documented code below 500
// (unless the input holds alice's password), and a 400 publishes nothing.
func FuzzLoginCommand(f *testing.F) {
	fx := newFixture(f)
	f.Add([]byte(`{"username":"alice","password":"wrong password"}`), true)
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/f","type":"io.sessionbus.login.requested.v1","data":{"username":"","password":"x"}}`), false)
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/f","type":"io.sessionbus.refresh.requested.v1","data":{}}`), false)
	documented := map[int]bool{400: true, 401: true, 403: true, 429: true}
	f.Fuzz(func(t *testing.T, body []byte, binary bool) {
		if len(body) > 2*events.MaxEventSize {
			t.Skip()
		}
		m := &nats.Msg{Subject: events.SubjectLogin, Data: body}
		if binary {
			m = binaryMsg(events.SubjectLogin, events.TypeLoginRequested, body)
		}
		before := fx.lastSeq(t)
		resp := fx.request(t, m)
		err := events.ReplyError(resp)
		code := events.ErrorCode(err)
		if err == nil {
			if !bytes.Contains(body, []byte(alicePassword)) {
				t.Fatalf("login without alice's password succeeded: %s", resp.Data)
			}
			return
		}
		if !documented[code] {
			t.Fatalf("code %d (%v), want one of 400, 401, 403, 429", code, err)
		}
		if code == 400 && fx.lastSeq(t) != before {
			t.Fatalf("a 400 published %d event(s)", fx.lastSeq(t)-before)
		}
	})
}
