// Package backoff spaces the retries of a failing operation: exponential
// delays with a cap and jitter, waited on a context and an injectable
// clock.
//
// A Backoff starts at Initial and doubles at each failure up to Max; each
// delay is drawn at random from its upper half ("equal jitter"), so that
// many clients that failed together do not retry together, and no delay
// is shorter than half the nominal one. Reset after a success.
//
//	b := backoff.New(100*time.Millisecond, 5*time.Second)
//	for {
//		err := try(ctx)
//		if err == nil {
//			b.Reset()
//			continue
//		}
//		if b.Wait(ctx) != nil {
//			return ctx.Err()
//		}
//	}
//
// Loops that wait on other channels too take the delay with Next and
// arm their own timer. It lives in the events module so that both the
// manager and the consumers a service imports use the same one.
package backoff
