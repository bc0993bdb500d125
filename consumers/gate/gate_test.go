package gate_test

import (
	"errors"
	"testing"

	"github.com/sessionbus/sessionbus/consumers/gate"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

func TestConfigValidate(t *testing.T) {
	src, err := httpauth.HTTPSource(nil, "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := httpauth.NewKeySet(httpauth.KeySetConfig{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := httpauth.New(httpauth.Config{Keys: keys, DenyList: httpauth.NoDenyList, Issuer: "sessionbus"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		auth    *httpauth.Authenticator
		cfg     gate.Config
		wantErr error
	}{
		{"defaults", auth, gate.Config{}, nil},
		{"own names", auth, gate.Config{SubjectHeader: "X-User-Id", SessionHeader: "x-session-id"}, nil},
		{"no authenticator", nil, gate.Config{}, gate.ErrInvalidConfig},
		{"not a header name", auth, gate.Config{SubjectHeader: "X-User Id"}, gate.ErrInvalidConfig},
		{"header injection", auth, gate.Config{SessionHeader: "X-S\r\nSet-Cookie: a=b"}, gate.ErrInvalidConfig},
		{"the credential's header", auth, gate.Config{SubjectHeader: "authorization"}, gate.ErrInvalidConfig},
		{"the challenge's header", auth, gate.Config{SessionHeader: "WWW-Authenticate"}, gate.ErrInvalidConfig},
		{"same header twice", auth, gate.Config{SubjectHeader: "X-Id", SessionHeader: "x-id"}, gate.ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gate.New(tc.auth, tc.cfg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if (g == nil) != (tc.wantErr != nil) {
				t.Fatalf("gate %v with err %v", g, err)
			}
		})
	}
}
