package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// events tail shows who asked for a fact, and nothing for a fact written
// before actors were recorded or one whose actor is not one.
func TestTailLineShowsTheActor(t *testing.T) {
	at := time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		name, data, want string
	}{
		{"bus identity", `{"session_id":"S1","user_id":"U1","reason":"laptop_stolen","actor":{"kind":"identity","name":"ops-ann","role":"operator"}}`,
			" reason=laptop_stolen actor=identity:ops-ann(operator)"},
		{"admin credential", `{"user_id":"U1","reason":"admin","actor":{"kind":"admin","name":"admin-token"}}`, " actor=admin:admin-token"},
		{"the user through a service", `{"session_id":"S1","user_id":"U1","reason":"logout","actor":{"kind":"user","name":"U1","via":"web-1"}}`,
			" actor=user:U1,via=web-1"},
		{"system", `{"session_id":"S1","user_id":"U1","reason":"idle_timeout","actor":{"kind":"system"}}`, " reason=idle_timeout actor=system"},
		{"an older fact", `{"session_id":"S1","user_id":"U1","reason":"admin"}`, " reason=admin"},
		{"not an actor", `{"session_id":"S1","user_id":"U1","reason":"admin","actor":{"kind":"admin","name":"a b\n#9 forged"}}`, " reason=admin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := tailLine(events.Stored{Seq: 7, Subject: "auth.events.session.revoked.S1", Time: at, Event: events.Event{
				ID: "E1", Type: events.TypeSessionRevoked, Source: "/sessionbus/test", Subject: "S1", Time: at, Data: []byte(tc.data)}})
			if !strings.HasSuffix(line, tc.want) {
				t.Errorf("line %q does not end in %q", line, tc.want)
			}
			if strings.Count(line, "actor=") > 1 || strings.Contains(line, "\n") {
				t.Errorf("line %q", line)
			}
		})
	}
}
