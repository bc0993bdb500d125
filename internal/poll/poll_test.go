package poll_test

import (
	"testing"

	"github.com/sessionbus/sessionbus/internal/poll"
)

type gate struct{ c chan struct{} }

func (g *gate) wait() { <-g.c }

func TestGoroutinesInCountsTheGoroutinesThisOneStarted(t *testing.T) {
	const fn = "poll_test.(*gate).wait"
	g := &gate{c: make(chan struct{})}
	for range 3 {
		go g.wait()
	}
	other := make(chan struct{})
	go func() { // started elsewhere: not counted
		go g.wait()
		close(other)
	}()
	<-other
	poll.Until(t, "3 goroutines in wait", func() bool { return poll.GoroutinesIn(fn) == 3 })
	close(g.c)
	poll.Until(t, "none in wait", func() bool { return poll.GoroutinesIn(fn) == 0 })
}
