package schemas_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/schemas"
)

// FuzzValidateEvent feeds arbitrary bytes to ValidateEvent: it must never
// panic, fail only with the package's sentinels, and accept only JSON
// objects.
func FuzzValidateEvent(f *testing.F) {
	for _, tc := range eventCases() {
		b, err := json.Marshal(tc.full)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tc.key, b)
	}
	f.Add(string(events.TypeLoginFailed), []byte(`{"account_key":1}`))
	f.Add("io.sessionbus.nope.v1", []byte(`{}`))
	f.Add(string(events.TypeKeyRevoked), []byte("\xff[[[["))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		err := schemas.ValidateEvent(typ, data)
		switch {
		case err == nil:
			var m map[string]json.RawMessage
			if json.Unmarshal(data, &m) != nil {
				t.Fatalf("accepted %q for %q: not a JSON object", data, typ)
			}
		case errors.Is(err, schemas.ErrInvalid), errors.Is(err, schemas.ErrUnknownSchema):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}
