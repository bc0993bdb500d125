package gate

import "errors"

// ErrInvalidConfig reports a Config that breaks a rule.
var ErrInvalidConfig = errors.New("gate: invalid config")
