package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestGenEnv runs docker/gen-env.sh with the test binary as htpasswd and
// checks that every hash matches its password and the NATS configs accept
// them.
func TestGenEnv(t *testing.T) {
	for _, tool := range []string{"sh", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "htpasswd")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "docker/gen-env.sh")
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gen-env.sh: %v\n%s", err, stderr.Bytes())
	}
	envFile := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(envFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	got := envFileKeys(t, envFile, false)
	t.Run("makes the variables of example.env", func(t *testing.T) {
		want := envFileKeys(t, "docker/example.env", false)
		if !slices.Equal(sorted(keysOf(got)), sorted(keysOf(want))) {
			t.Errorf("gen-env.sh makes %v, example.env has %v", sorted(keysOf(got)), sorted(keysOf(want)))
		}
	})
	t.Run("quotes the hashes", func(t *testing.T) {
		if !bytes.Contains(out, []byte("_PASSWORD_HASH='$2")) {
			t.Errorf("hashes are not single-quoted:\n%s", out)
		}
	})
	t.Run("each hash matches its password", func(t *testing.T) {
		for role, hashVar := range roles {
			pw := got[strings.ToUpper(role)+"_PASSWORD"]
			if len(pw) != 64 || bcrypt.CompareHashAndPassword([]byte(got[hashVar]), []byte(pw)) != nil {
				t.Errorf("%s: the hash does not match the password", role)
			}
		}
	})
	t.Run("the NATS configs take the generated hashes", func(t *testing.T) {
		for _, hashVar := range roles {
			t.Setenv(hashVar, got[hashVar])
		}
		opts := parseNATS(t, natsNodes[0])
		if u := userOf(t, opts, "manager"); u.Password != got["NATS_MANAGER_PASSWORD_HASH"] {
			t.Errorf("nats-1.conf: manager password %q, want the generated hash", u.Password)
		}
	})
}
