package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

var natsNodes = []string{"nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMain builds the binaries while the first tests run.
func TestMain(m *testing.M) {
	go helpOnce.Do(loadFlags)
	code := m.Run()
	helpOnce.Do(func() {}) // wait for the build
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cliFlags are the flags of a program's command, from its --help.
type cliFlags struct {
	flags map[string]bool // without dashes
	env   map[string]bool // SESSIONBUS_* variables (sessionbus only)
}

func (f cliFlags) sortedFlags() []string {
	var s []string
	for k := range f.flags {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

var (
	helpOnce   sync.Once
	serveFlags cliFlags
	exampleFl  cliFlags
	helpErr    error
)

var (
	flagRe = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--?([a-z0-9][a-z0-9-]*)\b`)
	envRe  = regexp.MustCompile(`\(env (SESSIONBUS_[A-Z0-9_]+)\)`)
)

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("go tool not found")
	}
	return p, nil
}

// buildBinary builds a command of this module into dir.
func buildBinary(dir, pkg string) (string, error) {
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/sessionbus/sessionbus/"+pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

func helpFlags(bin string, args ...string) (cliFlags, error) {
	out, _ := exec.Command(bin, args...).CombinedOutput() // flag's -help exits 0 or 2
	f := cliFlags{flags: map[string]bool{}, env: map[string]bool{}}
	for _, m := range flagRe.FindAllStringSubmatch(string(out), -1) {
		f.flags[m[1]] = true
	}
	for _, m := range envRe.FindAllStringSubmatch(string(out), -1) {
		f.env[m[1]] = true
	}
	if len(f.flags) == 0 {
		return f, fmt.Errorf("%s %v: no flags in its help:\n%s", bin, args, out)
	}
	return f, nil
}

var binDir string

// loadFlags builds the binaries into binDir and reads their flags.
func loadFlags() {
	binDir, helpErr = os.MkdirTemp("", "deploy-test-bin")
	if helpErr != nil {
		return
	}
	var bin string
	if bin, helpErr = buildBinary(binDir, "cmd/sessionbus"); helpErr != nil {
		return
	}
	if serveFlags, helpErr = helpFlags(bin, "serve", "--help"); helpErr != nil {
		return
	}
	// example-service is specified by the contract; once it is built,
	// its own help is the truth.
	exampleFl = cliFlags{flags: map[string]bool{"nats-url": true, "listen": true, "nats-inbox-prefix": true}}
	if _, err := os.Stat("../cmd/example-service"); err == nil {
		ebin, err := buildBinary(binDir, "cmd/example-service")
		if err == nil {
			if f, err := helpFlags(ebin, "--help"); err == nil {
				exampleFl = f
			}
		}
	}
}

// flags builds sessionbus (and example-service, once it exists) and
// returns the flags of `sessionbus serve` and of example-service.
func flags(t *testing.T) (serve, example cliFlags) {
	t.Helper()
	helpOnce.Do(loadFlags)
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	if !serveFlags.env["SESSIONBUS_STREAM_REPLICAS"] || !serveFlags.flags["nats-url"] {
		t.Fatalf("sessionbus serve --help lacks --nats-url or SESSIONBUS_STREAM_REPLICAS: %v", serveFlags.sortedFlags())
	}
	return serveFlags, exampleFl
}

func sessionbusBinary(t *testing.T) string {
	t.Helper()
	flags(t)
	return filepath.Join(binDir, "sessionbus")
}

// checkArgs checks that every --flag of args is a flag of the program.
func checkArgs(t *testing.T, where string, args []string, f cliFlags) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !f.flags[name] {
			t.Errorf("%s: unknown flag %s (known: %v)", where, a, f.sortedFlags())
		}
	}
}

// checkEnv checks that every SESSIONBUS_* name is a variable of serve.
func checkEnv(t *testing.T, where string, names []string, f cliFlags) {
	t.Helper()
	for _, n := range names {
		if strings.HasPrefix(n, "SESSIONBUS_") && !f.env[n] {
			t.Errorf("%s: %s is not a variable of sessionbus serve", where, n)
		}
	}
}

// loopback reports whether a host:port listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a decoded YAML tree by map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func strs(v any, path ...any) []string {
	var out []string
	for _, x := range list(v, path...) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// envFileKeys reads KEY=VALUE lines; commented-out assignments count too
// when withComments.
func envFileKeys(t *testing.T, file string, withComments bool) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	assign := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || (strings.HasPrefix(line, "#") && !withComments) {
			continue
		}
		m := assign.FindStringSubmatch(line)
		if m == nil {
			if !strings.HasPrefix(line, "#") {
				t.Errorf("%s: not KEY=VALUE: %q", file, line)
			}
			continue
		}
		keys[m[1]] = strings.Trim(m[2], `'"`)
	}
	return keys
}

func envNames(v any) []string {
	var names []string
	switch e := v.(type) {
	case map[string]any:
		for k := range e {
			names = append(names, k)
		}
	case []any:
		for _, x := range e {
			k, _, _ := strings.Cut(fmt.Sprint(x), "=")
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

// dockerLines returns the Dockerfile's instructions, continuation lines
// joined, comments dropped.
func dockerLines(t *testing.T) [][2]string {
	t.Helper()
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		cur += " " + strings.TrimSuffix(trimmed, `\`)
		if strings.HasSuffix(trimmed, `\`) {
			continue
		}
		instr, rest, _ := strings.Cut(strings.TrimSpace(cur), " ")
		out = append(out, [2]string{strings.ToUpper(instr), strings.TrimSpace(rest)})
		cur = ""
	}
	return out
}

func dockerStages(t *testing.T) []string {
	t.Helper()
	var stages []string
	for _, l := range dockerLines(t) {
		if l[0] == "FROM" {
			f := strings.Fields(l[1])
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages = append(stages, f[2])
			}
		}
	}
	return stages
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func keysOf(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}
