package deploy_test

import (
	"os"
	"regexp"
	"testing"
)

// TestServicesAcceptTheManagersTokens: in each example, the issuer the
// protected service requires is the one the manager puts in its tokens;
// otherwise the service refuses every token.
func TestServicesAcceptTheManagersTokens(t *testing.T) {
	read := func(t *testing.T, file string) string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// The defaults of both programs are "sessionbus".
	issuer := func(s string, re *regexp.Regexp) string {
		if m := re.FindStringSubmatch(s); m != nil {
			return m[1]
		}
		return "sessionbus"
	}
	managerEnv := regexp.MustCompile(`SESSIONBUS_ISSUER["']?(?::[ \t]*|\s*\n\s*value:\s*)["']?([^"'\s]+)`)
	serviceArg := regexp.MustCompile(`(?m)--issuer["']?(?:,\s*|\s*\n\s*-\s*|=)["']?([^"'\s\],]+)`)
	for _, tc := range []struct{ name, manager, service string }{
		{"kubernetes", "kubernetes/sessionbus.yaml", "kubernetes/example-service.yaml"},
		{"compose", "docker/compose.yaml", "docker/compose.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, s := issuer(read(t, tc.manager), managerEnv), issuer(read(t, tc.service), serviceArg)
			if m != s {
				t.Errorf("the manager issues tokens for %q, the example service requires %q: it would refuse every token", m, s)
			}
		})
	}
	t.Run("kubernetes manager trusts its proxies", func(t *testing.T) {
		if !regexp.MustCompile(`SESSIONBUS_TRUSTED_PROXIES`).MatchString(read(t, "kubernetes/sessionbus.yaml")) {
			t.Error("sessionbus.yaml behind an ingress sets no SESSIONBUS_TRUSTED_PROXIES: every login would share the proxy's address for throttling")
		}
	})
}
