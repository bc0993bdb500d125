package events

import (
	"errors"
	"fmt"
)

var (
	// ErrMalformed reports a message that is not a valid CloudEvent of the
	// NATS binding, or whose data is not the JSON its type requires.
	ErrMalformed = errors.New("events: malformed event")
	// ErrUnknownType reports a well-formed CloudEvent whose type (or type
	// version) this version does not know. Consumers skip and count these.
	ErrUnknownType = errors.New("events: unknown event type")
	// ErrTooLarge reports a message over MaxEventSize.
	ErrTooLarge = errors.New("events: event too large")
	// ErrMsgIDMismatch reports a message whose Nats-Msg-Id header (the
	// stream's de-duplication id) is not its ce-id. A fact is published
	// with the two equal (ToMsg); one where they differ was written by
	// someone else, for example to store an earlier fact a second time
	// past the de-duplication window. Consumers skip it and count it under
	// a reason of its own. It also matches ErrMalformed, so that code
	// that knows only ErrMalformed refuses it too.
	ErrMsgIDMismatch = fmt.Errorf("%w: ce-id differs from Nats-Msg-Id", ErrMalformed)
)
