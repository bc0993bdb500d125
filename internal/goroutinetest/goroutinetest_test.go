package goroutinetest_test

import (
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/internal/goroutinetest"
)

type gate struct{ c chan struct{} }

func (g *gate) wait() { <-g.c }

func TestInCountsTheGoroutinesThisOneStarted(t *testing.T) {
	const fn = "goroutinetest_test.(*gate).wait"
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
	poll(t, func() bool { return goroutinetest.In(fn) == 3 })
	close(g.c)
	poll(t, func() bool { return goroutinetest.In(fn) == 0 })
}

func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}
