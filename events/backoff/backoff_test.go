package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events/backoff"
)

func TestNominal(t *testing.T) {
	tests := []struct {
		name         string
		initial, max time.Duration
		n            int
		want         time.Duration
	}{
		{"first", 100 * time.Millisecond, 5 * time.Second, 1, 100 * time.Millisecond},
		{"doubles", 100 * time.Millisecond, 5 * time.Second, 4, 800 * time.Millisecond},
		{"capped", 100 * time.Millisecond, 5 * time.Second, 7, 5 * time.Second},
		{"stays capped", 100 * time.Millisecond, 5 * time.Second, 1000, 5 * time.Second},
		{"max below initial", time.Second, time.Millisecond, 3, time.Second},
		{"huge cap does not overflow", time.Second, time.Duration(1<<63 - 1), 200, time.Duration(1<<63 - 1)},
		{"zero", 0, 0, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff.New(tt.initial, tt.max)
			if got := b.Nominal(tt.n); got != tt.want {
				t.Fatalf("Nominal(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestNextIsJitteredWithinTheUpperHalf(t *testing.T) {
	b := backoff.New(100*time.Millisecond, time.Second)
	distinct := map[time.Duration]bool{}
	for range 200 {
		b.Reset()
		for n := 1; n <= 6; n++ {
			d, nominal := b.Next(), b.Nominal(n)
			if d < nominal/2 || d > nominal {
				t.Fatalf("failure %d: delay %v outside [%v, %v]", n, d, nominal/2, nominal)
			}
			if n == 1 {
				distinct[d] = true
			}
		}
		if b.Failures() != 6 {
			t.Fatalf("Failures = %d, want 6", b.Failures())
		}
	}
	if len(distinct) < 10 {
		t.Fatalf("200 first delays took only %d values: no jitter", len(distinct))
	}
}

func TestResetStartsAgain(t *testing.T) {
	b := backoff.New(time.Second, time.Minute)
	for range 5 {
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d > time.Second {
		t.Fatalf("after Reset: %v, want at most the initial 1s", d)
	}
}

func TestWaitUsesTheInjectedClock(t *testing.T) {
	var asked []time.Duration
	b := backoff.New(time.Hour, 4*time.Hour)
	b.After = func(d time.Duration) <-chan time.Time {
		asked = append(asked, d)
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	for range 3 {
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(asked) != 3 {
		t.Fatalf("asked the clock %d times, want 3", len(asked))
	}
	for i, d := range asked {
		if nominal := b.Nominal(i + 1); d < nominal/2 || d > nominal {
			t.Fatalf("wait %d: %v outside [%v, %v]", i+1, d, nominal/2, nominal)
		}
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	b := backoff.New(time.Hour, time.Hour)
	b.After = func(time.Duration) <-chan time.Time { return nil } // never fires
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return when its context ended")
	}
}
