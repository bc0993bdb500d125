package jsbus

import "errors"

// ErrInvalidConfig reports a stream configuration that breaks a rule
// (see StreamConfig).
var ErrInvalidConfig = errors.New("jsbus: invalid stream config")

// ErrUnsettled reports a publish whose outcome is unknown: an attempt
// was sent, no answer came, and the stream did not answer the question
// "was it stored?" within the settle timeout. The fact may or may not be
// on the stream; a retry with the same event is stored at most once.
var ErrUnsettled = errors.New("jsbus: publish outcome unknown")
