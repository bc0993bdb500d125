package deploy_test

import (
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/consumers/gate"
)

// TestEnvoy checks deploy/envoy/envoy.yaml without Envoy (not packaged for
// Debian): ext_authz in HTTP service mode runs before the router and asks
// the gate at its default address, passes the Authorization header to
// it, lets only the gate's identity headers reach the service (replacing
// the client's), refuses when the gate cannot be asked, and routes to
// example-service.
func TestEnvoy(t *testing.T) {
	docs := yamlDocs(t, "envoy/envoy.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d YAML documents, want 1", len(docs))
	}
	res := docs[0]["static_resources"]
	clusters := map[string]string{} // name → host:port
	for _, c := range list(res, "clusters") {
		sa := get(c, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")
		clusters[str(c, "name")] = net.JoinHostPort(str(sa, "address"), fmt.Sprint(get(sa, "port_value")))
	}
	listeners := list(res, "listeners")
	if len(listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(listeners))
	}
	filters := list(listeners[0], "filter_chains", 0, "filters")
	if len(filters) != 1 || str(filters[0], "typed_config", "@type") != "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
		t.Fatalf("the listener's filter is not one http_connection_manager: %v", filters)
	}
	hcm := get(filters[0], "typed_config")
	hf := list(hcm, "http_filters")
	if len(hf) != 2 ||
		str(hf[0], "name") != "envoy.filters.http.ext_authz" ||
		str(hf[0], "typed_config", "@type") != "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz" ||
		str(hf[1], "typed_config", "@type") != "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" {
		t.Fatalf("http_filters are not ext_authz then the router: %v", hf)
	}
	authz := get(hf[0], "typed_config")
	svc := get(authz, "http_service")

	t.Run("asks the gate at its default address", func(t *testing.T) {
		want := gateDefaultListen(t)
		cluster := str(svc, "server_uri", "cluster")
		if clusters[cluster] != want {
			t.Errorf("server_uri.cluster %q is at %q, want the gate's --listen default %s", cluster, clusters[cluster], want)
		}
		u, err := url.Parse(str(svc, "server_uri", "uri"))
		if err != nil || u.Host != want {
			t.Errorf("server_uri.uri %q is not http://%s", str(svc, "server_uri", "uri"), want)
		}
		if p := str(svc, "path_prefix"); !strings.HasPrefix(p, "/") {
			t.Errorf("path_prefix %q does not start with /", p)
		}
		if str(svc, "server_uri", "timeout") == "" {
			t.Error("no timeout for the gate")
		}
	})
	t.Run("the gate is asked in HTTP service mode, without the body", func(t *testing.T) {
		if get(authz, "grpc_service") != nil || get(authz, "with_request_body") != nil {
			t.Error("grpc_service or with_request_body set: the gate speaks HTTP and reads only headers")
		}
		if str(authz, "transport_api_version") != "V3" {
			t.Error("transport_api_version is not V3")
		}
	})
	t.Run("refuses when the gate cannot be asked", func(t *testing.T) {
		if get(authz, "failure_mode_allow") != false {
			t.Error("failure_mode_allow must be false")
		}
		if str(authz, "status_on_error", "code") != "ServiceUnavailable" {
			t.Errorf("status_on_error %v, want ServiceUnavailable", get(authz, "status_on_error"))
		}
	})
	exact := func(path ...any) []string {
		var out []string
		for _, p := range list(svc, path...) {
			out = append(out, strings.ToLower(str(p, "exact")))
		}
		return out
	}
	t.Run("the token reaches the gate", func(t *testing.T) {
		if got := exact("authorization_request", "allowed_headers", "patterns"); !slices.Contains(got, "authorization") {
			t.Errorf("allowed_headers %v lack authorization", got)
		}
	})
	t.Run("only the gate's identity headers reach the service, replacing the client's", func(t *testing.T) {
		got := exact("authorization_response", "allowed_upstream_headers", "patterns")
		want := []string{strings.ToLower(gate.DefaultSubjectHeader), strings.ToLower(gate.DefaultSessionHeader)}
		if !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("allowed_upstream_headers %v, want %v", got, want)
		}
		if get(svc, "authorization_response", "allowed_upstream_headers_to_append") != nil {
			t.Error("allowed_upstream_headers_to_append would keep the client's identity headers beside the gate's")
		}
	})
	t.Run("a refusal keeps its challenge and Retry-After", func(t *testing.T) {
		got := exact("authorization_response", "allowed_client_headers", "patterns")
		for _, h := range []string{"www-authenticate", "retry-after"} {
			if !slices.Contains(got, h) {
				t.Errorf("allowed_client_headers %v lack %s", got, h)
			}
		}
	})
	t.Run("routes to example-service", func(t *testing.T) {
		route := str(hcm, "route_config", "virtual_hosts", 0, "routes", 0, "route", "cluster")
		if clusters[route] != "127.0.0.1:8090" {
			t.Errorf("route to %q at %q, want example-service's default 127.0.0.1:8090", route, clusters[route])
		}
		for name, addr := range clusters {
			if !loopback(addr) {
				t.Errorf("cluster %s at %s: the example stays on loopback", name, addr)
			}
		}
	})
}

// gateDefaultListen is the default of `sessionbus gate --listen`.
func gateDefaultListen(t *testing.T) string {
	t.Helper()
	out, _ := exec.Command(sessionbusBinary(t), "gate", "--help").CombinedOutput()
	m := regexp.MustCompile(`--listen string .*\(default "([^"]+)"\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no --listen default in sessionbus gate --help:\n%s", out)
	}
	return string(m[1])
}
