package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIPBehindTrustedProxies(t *testing.T) {
	h := &Handlers{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"direct client", "203.0.113.7:5000", "", "203.0.113.7"},
		{"direct client lying", "203.0.113.7:5000", "198.51.100.1", "203.0.113.7"},
		{"via proxy", "10.1.2.3:5000", "198.51.100.1", "198.51.100.1"},
		{"via two proxies", "10.1.2.3:5000", "198.51.100.1, 10.9.9.9", "198.51.100.1"},
		{"forged left of the proxy", "10.1.2.3:5000", "1.2.3.4, 198.51.100.1", "198.51.100.1"},
		{"proxy without header", "10.1.2.3:5000", "", "10.1.2.3"},
		{"garbage header", "10.1.2.3:5000", "nope", "10.1.2.3"},
		{"ipv6 mapped", "[::ffff:203.0.113.7]:5000", "", "203.0.113.7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/login", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := h.clientIP(r); got != tc.want {
				t.Fatalf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
}
