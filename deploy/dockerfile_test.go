package deploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestDockerfile(t *testing.T) {
	serve, _ := flags(t)
	lines := dockerLines(t)
	type stage struct {
		name, from, user string
		env              []string
	}
	var stages []*stage
	var args []string
	var exposed []string
	var healthcheck, cmd, entrypoint string
	for _, l := range lines {
		instr, rest := l[0], l[1]
		var cur *stage
		if len(stages) > 0 {
			cur = stages[len(stages)-1]
		}
		switch instr {
		case "FROM":
			f := strings.Fields(rest)
			s := &stage{from: f[0]}
			if len(f) == 3 {
				s.name = f[2]
			}
			stages = append(stages, s)
		case "ARG":
			args = append(args, rest)
		case "USER":
			cur.user = rest
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, _, _ := strings.Cut(kv, "=")
				cur.env = append(cur.env, k)
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(rest)...)
		case "HEALTHCHECK":
			healthcheck = rest
		case "CMD":
			cmd = rest
		case "ENTRYPOINT":
			entrypoint = rest
		}
	}
	t.Run("copies no secret", func(t *testing.T) {
		for _, l := range lines {
			if instr, rest := l[0], l[1]; (instr == "COPY" || instr == "ADD") && (strings.Contains(rest, ".env") || strings.Contains(rest, ".creds")) {
				t.Errorf("Dockerfile copies a secret: %s %s", instr, rest)
			}
		}
	})
	t.Run("sets no secret", func(t *testing.T) {
		secret := regexp.MustCompile(`(?i)(password|passwd|secret|token|private|creds|api_?key)`)
		for _, l := range lines {
			if instr, rest := l[0], l[1]; (instr == "ENV" || instr == "ARG" || instr == "LABEL") && secret.MatchString(rest) {
				t.Errorf("Dockerfile sets a secret: %s %s", instr, rest)
			}
		}
	})
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a runtime", len(stages))
	}
	final := stages[len(stages)-1]
	t.Run("the default stage is sessionbus", func(t *testing.T) {
		if final.name != "sessionbus" {
			t.Errorf("the last (default) stage is %q, want sessionbus", final.name)
		}
	})
	t.Run("runtime stages run as non-root", func(t *testing.T) {
		for _, s := range stages {
			if !strings.Contains(s.from, "distroless") && !strings.Contains(s.from, "scratch") {
				continue
			}
			if s.user == "" || s.user == "root" || strings.HasPrefix(s.user, "0:") || s.user == "0" {
				t.Errorf("runtime stage %s runs as %q, want a non-root USER", s.name, s.user)
			}
		}
	})
	t.Run("the builder uses the Go version of go.mod", func(t *testing.T) {
		goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(must(os.ReadFile("../go.mod")))
		if !slices.Contains(args, "GO_VERSION="+string(goVersion[1])) || !strings.HasPrefix(stages[0].from, "golang:") {
			t.Errorf("builder: FROM %s with ARGs %q, want golang:${GO_VERSION} with GO_VERSION=%s (go.mod)", stages[0].from, args, goVersion[1])
		}
	})
	t.Run("the builder copies the go.mod of every module go.mod replaces with a directory before the download", func(t *testing.T) {
		var copied []string
		for _, l := range lines {
			if l[0] == "RUN" && strings.Contains(l[1], "go mod download") {
				break
			}
			if l[0] == "COPY" {
				copied = append(copied, strings.Fields(l[1])...)
			}
		}
		for _, m := range regexp.MustCompile(`=> \./(\S+)`).FindAllSubmatch(must(os.ReadFile("../go.mod")), -1) {
			for _, f := range []string{"/go.mod", "/go.sum"} {
				if !slices.Contains(copied, string(m[1])+f) {
					t.Errorf("%s%s is not copied before go mod download (COPY before it: %q)", m[1], f, copied)
				}
			}
		}
	})
	t.Run("the builder disables cgo", func(t *testing.T) {
		if !slices.Contains(stages[0].env, "CGO_ENABLED") {
			t.Error("builder does not set CGO_ENABLED=0")
		}
	})
	t.Run("ENV sets only variables of serve", func(t *testing.T) {
		checkEnv(t, "Dockerfile ENV", final.env, serve)
	})
	t.Run("exposes NATS, the public and the admin API", func(t *testing.T) {
		for _, p := range []string{"4222", "8080", "8081"} {
			if !slices.Contains(exposed, p) {
				t.Errorf("Dockerfile does not EXPOSE %s", p)
			}
		}
	})
	t.Run("has a HEALTHCHECK instruction", func(t *testing.T) {
		if healthcheck == "" {
			t.Error("Dockerfile has no HEALTHCHECK instruction (NONE with a note is fine)")
		}
	})
	t.Run("runs sessionbus serve", func(t *testing.T) {
		if !strings.Contains(entrypoint, "/sessionbus") || cmd != `["serve"]` {
			t.Errorf("ENTRYPOINT %s CMD %s, want sessionbus serve", entrypoint, cmd)
		}
	})
	t.Run("the dockerignore keeps out git and secrets", func(t *testing.T) {
		ignore := string(must(os.ReadFile("docker/Dockerfile.dockerignore")))
		for _, p := range []string{".git", ".env", "sessionbus-data"} {
			if !strings.Contains(ignore, p) {
				t.Errorf("Dockerfile.dockerignore does not keep out %s", p)
			}
		}
	})
}
