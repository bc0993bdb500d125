package session

import (
	"context"
	"testing"

	"github.com/sessionbus/sessionbus/events"
)

func TestActorOfAndHolder(t *testing.T) {
	ops := events.Actor{Kind: events.ActorIdentity, Name: "ops-ann", Role: "operator"}
	tests := []struct {
		name       string
		ctx        context.Context
		want, user events.Actor
	}{
		{"in-process call", context.Background(), events.Actor{Kind: events.ActorLocal},
			events.Actor{Kind: events.ActorUser, Name: "U1"}},
		{"bus identity", WithActor(context.Background(), ops), ops,
			events.Actor{Kind: events.ActorUser, Name: "U1", Via: "ops-ann"}},
		{"admin credential", WithActor(context.Background(), events.Actor{Kind: events.ActorAdmin, Name: "admin-token"}),
			events.Actor{Kind: events.ActorAdmin, Name: "admin-token"}, events.Actor{Kind: events.ActorUser, Name: "U1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := actorOf(tc.ctx); got != tc.want {
				t.Errorf("actorOf = %+v, want %+v", got, tc.want)
			}
			if got := holder(tc.ctx, "U1"); got != tc.user || !got.Valid() {
				t.Errorf("holder = %+v, want %+v", got, tc.user)
			}
		})
	}
}

// An operator's own reasons share one metric label value.
func TestReasonLabel(t *testing.T) {
	for r, want := range map[string]string{
		events.ReasonAdmin: events.ReasonAdmin, events.ReasonRefreshReuse: events.ReasonRefreshReuse,
		events.ReasonKeyCompromised: events.ReasonKeyCompromised, "laptop_stolen": "other", "ticket_4711": "other",
	} {
		if got := reasonLabel(r); got != want {
			t.Errorf("reasonLabel(%q) = %q, want %q", r, got, want)
		}
	}
}
