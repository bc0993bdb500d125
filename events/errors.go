package events

import "errors"

var (
	// ErrMalformed reports a message that is not a valid CloudEvent of the
	// NATS binding, or whose data is not the JSON its type requires.
	ErrMalformed = errors.New("events: malformed event")
	// ErrUnknownType reports a well-formed CloudEvent whose type (or type
	// version) this version does not know. Consumers skip and count these.
	ErrUnknownType = errors.New("events: unknown event type")
	// ErrTooLarge reports a message over MaxEventSize.
	ErrTooLarge = errors.New("events: event too large")
)
