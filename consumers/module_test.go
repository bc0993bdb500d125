package consumers_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The manager's dependencies, which a service importing the consumers
// must not get: not in its go.mod, not in its go.sum, not in its build.
var managerOnly = []string{
	"github.com/nats-io/nats-server/",
	"github.com/dgraph-io/badger/",
	"github.com/dgraph-io/ristretto/",
	"github.com/spf13/cobra ",
	"github.com/santhosh-tekuri/jsonschema/",
	"github.com/sessionbus/sessionbus ", // the root module itself
}

// TestImportedFromAnOutsideModule builds a service module in a temporary
// directory that imports consumers/httpauth and consumers/gate (with
// replace directives to this checkout), runs go mod tidy in it and checks
// that it holds none of the manager's dependencies. It needs the go command and a module cache
// that holds the consumers' dependencies (it runs offline with a warm
// cache: go.sum is seeded from this module's).
func TestImportedFromAnOutsideModule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	consumers, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(filepath.Dir(consumers), "events")
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", `module example.com/service

go 1.26.0

require github.com/sessionbus/sessionbus/consumers v0.0.0-00010101000000-000000000000

replace (
	github.com/sessionbus/sessionbus/consumers => `+consumers+`
	github.com/sessionbus/sessionbus/events => `+events+`
)
`)
	write("main.go", `package main

import (
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/consumers/gate"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

func main() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		panic(err)
	}
	s, err := httpauth.NewService(httpauth.ServiceConfig{Conn: nc, Auth: httpauth.Config{Issuer: "sessionbus"}})
	if err != nil {
		panic(err)
	}
	g, err := gate.New(s.Authenticator, gate.Config{})
	if err != nil {
		panic(err)
	}
	go func() { _ = http.ListenAndServe("127.0.0.1:8092", g) }()
	_ = http.ListenAndServe("127.0.0.1:8090", s.Middleware(http.NotFoundHandler()))
}
`)
	sums, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sums))

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gobin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("mod", "tidy")
	run("build", "-o", os.DevNull, ".")
	graph := run("list", "-m", "all")
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	gosum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range managerOnly {
		for what, text := range map[string]string{"go list -m all": graph, "go.mod": string(gomod), "go.sum": string(gosum)} {
			if strings.Contains(text, m) {
				t.Errorf("%s of a service that imports consumers/httpauth holds %s", what, strings.TrimSpace(m))
			}
		}
	}
	if t.Failed() {
		t.Logf("go list -m all:\n%s", graph)
	}
}
