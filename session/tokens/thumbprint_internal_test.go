package tokens

import (
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/sessionbus/sessionbus/session"
)

// The kid of every key ever made is the RFC 7638 thumbprint of its public
// JWK: go-jose's must be the one computed from the members as RFC 7638 §3
// says (required members, lexicographic order, no whitespace), so that
// kids of stored keys and new ones agree.
func TestThumbprintIsRFC7638(t *testing.T) {
	for _, alg := range []string{session.AlgES256, session.AlgEdDSA, session.AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			k, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			p, err := parse(k)
			if err != nil {
				t.Fatal(err)
			}
			wire, err := json.Marshal(p.jwk)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]string
			if err := json.Unmarshal(wire, &m); err != nil {
				t.Fatal(err)
			}
			var required []string
			switch m["kty"] {
			case "EC":
				required = []string{"crv", "kty", "x", "y"}
			case "OKP":
				required = []string{"crv", "kty", "x"}
			case "RSA":
				required = []string{"e", "kty", "n"}
			default:
				t.Fatalf("kty %q", m["kty"])
			}
			canon := "{"
			for i, name := range required {
				if i > 0 {
					canon += ","
				}
				v, _ := json.Marshal(m[name])
				canon += `"` + name + `":` + string(v)
			}
			canon += "}"
			sum := sha256.Sum256([]byte(canon))
			if want := b64.EncodeToString(sum[:]); k.KID != want {
				t.Errorf("kid %s, RFC 7638 thumbprint %s", k.KID, want)
			}
			if m["kid"] != k.KID || m["use"] != "sig" || m["alg"] != alg {
				t.Errorf("JWK %s", wire)
			}
		})
	}
}
