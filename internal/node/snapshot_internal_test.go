package node

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events/jsbus"
)

// A view may follow the stream when the stream holds every fact after
// it, or when the stream's own limits guarantee that what it dropped is
// older than any session; otherwise the manager refuses to start.
func TestCheckCoverage(t *testing.T) {
	const lifetime = 30 * 24 * time.Hour
	bounded := jsbus.StreamConfig{MinMaxAge: lifetime}.JetStreamConfig()
	short := bounded
	short.MaxAge = time.Hour
	purgeable := bounded
	purgeable.DenyPurge = false
	byCount := bounded
	byCount.MaxMsgs, byCount.Discard = 1000, jetstream.DiscardOld
	state := func(first, last uint64) jetstream.StreamState {
		return jetstream.StreamState{FirstSeq: first, LastSeq: last, Msgs: last - first + 1}
	}
	for _, c := range []struct {
		name    string
		cfg     jetstream.StreamConfig
		state   jetstream.StreamState
		applied uint64
		wantErr error
	}{
		{"new stream, new view", short, jetstream.StreamState{}, 0, nil},
		{"whole history", short, state(1, 100), 0, nil},
		{"view right before the first fact", short, state(51, 100), 50, nil},
		{"view past the first fact", short, state(51, 100), 80, nil},
		{"everything aged out, view at the end", short, jetstream.StreamState{FirstSeq: 101, LastSeq: 100}, 100, nil},
		{"gap, stream keeps the session lifetime and drops nothing else", bounded, state(51, 100), 10, nil},
		{"gap, stream keeps less than the session lifetime", short, state(51, 100), 10, ErrHistoryGone},
		{"gap, new view, short stream", short, state(51, 100), 0, ErrHistoryGone},
		{"gap, stream may be purged", purgeable, state(51, 100), 10, ErrHistoryGone},
		{"gap, stream drops by count", byCount, state(51, 100), 10, ErrHistoryGone},
		{"gap, everything aged out of a short stream", short, jetstream.StreamState{FirstSeq: 101, LastSeq: 100}, 10, ErrHistoryGone},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkCoverage(&jetstream.StreamInfo{Config: c.cfg, State: c.state}, c.applied, lifetime)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("checkCoverage: %v, want %v", err, c.wantErr)
			}
		})
	}
}
