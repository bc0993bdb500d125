package jsbus

import "errors"

// ErrInvalidConfig reports a stream configuration that breaks a rule
// (see StreamConfig).
var ErrInvalidConfig = errors.New("jsbus: invalid stream config")
