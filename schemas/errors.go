package schemas

import "errors"

var (
	// ErrInvalid reports data that is not JSON or does not match its
	// schema. The error wrapping it names the schema and the failed rules
	// (a *jsonschema.ValidationError is in its chain). Messages name
	// fields, never the values of secret ones.
	ErrInvalid = errors.New("schemas: invalid data")
	// ErrUnknownSchema reports an event type or command subject that has
	// no schema in this version.
	ErrUnknownSchema = errors.New("schemas: unknown schema")
)
