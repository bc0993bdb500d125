package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/sessionbus/sessionbus/events/embedded"
)

// Defaults of the contract.
const (
	defaultDataDir    = "./sessionbus-data"
	defaultNATSListen = "127.0.0.1:4222"
)

// managerPasswordFile is where serve keeps the embedded server's manager
// password, 0600 in the data dir; local admin commands read it.
const managerPasswordFile = "nats-manager-password"

// natsFlags are the connection flags of every command that talks to NATS.
type natsFlags struct {
	url      string
	creds    string
	user     string
	password string
	dataDir  string
	listen   string
	inbox    string
	timeout  time.Duration
}

func (f *natsFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "nats-url", "", "NATS server URL(s), comma separated (default: the embedded server at nats://"+defaultNATSListen+")")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file (JWT and nkey)")
	fs.StringVar(&f.user, "nats-user", "", "NATS user name")
	fs.StringVar(&f.password, "nats-password", "", "NATS password (prefer the environment variable)")
	fs.StringVar(&f.listen, "nats-listen", defaultNATSListen, "address of the local embedded NATS server (serve listens there; other commands connect there unless --nats-url is set)")
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir, "data directory: JetStream store, session view and the embedded server's manager credentials")
	fs.StringVar(&f.inbox, "nats-inbox-prefix", "", "inbox prefix for replies (a private inbox such as _INBOX_admin, matching the user's subscribe permission; default _INBOX, or "+embedded.ManagerInboxPrefix+" as the local manager)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the server")
}

// effectiveURL is the URL to dial: --nats-url or the embedded default.
func (f *natsFlags) effectiveURL() string {
	if f.url != "" {
		return f.url
	}
	return "nats://" + f.listen
}

// options returns the connection options: explicit credentials, or, when
// talking to the local embedded server, the manager password from the data
// dir if this user can read it.
func (f *natsFlags) options(name string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(f.timeout)}
	switch {
	case f.creds != "":
		opts = append(opts, nats.UserCredentials(f.creds))
	case f.user != "":
		opts = append(opts, nats.UserInfo(f.user, f.password))
	case f.url == "":
		pw, err := readManagerPassword(f.dataDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if pw != "" {
			opts = append(opts, nats.UserInfo(embedded.ManagerUser, pw), nats.CustomInboxPrefix(embedded.ManagerInboxPrefix))
		}
	}
	if f.inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(f.inbox))
	}
	return opts, nil
}

// connect dials NATS with the flags.
func (f *natsFlags) connect(_ context.Context, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := f.options(name)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(f.effectiveURL(), append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", f.effectiveURL(), err)
	}
	return nc, nil
}

func readManagerPassword(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, managerPasswordFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
