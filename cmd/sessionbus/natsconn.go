package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/sessionbus/sessionbus/events/natsauth"
)

// Defaults of the contract.
const (
	defaultDataDir    = "./sessionbus-data"
	defaultNATSListen = "127.0.0.1:4222"
)

// Files of the embedded server's trust in the data dir (see package
// natsauth): the authority's keys and register, and the credentials serve
// issues on first start for the local operator and auditor, 0600. Local
// commands use them when given no --nats-creds.
const (
	authorityDir  = "nats-auth"
	operatorCreds = "operator.creds"
	auditCreds    = "audit.creds"
)

// natsFlags are the connection flags of every command that talks to NATS.
type natsFlags struct {
	url      string
	creds    string
	ca       string
	user     string
	password string
	dataDir  string
	listen   string
	inbox    string
	timeout  time.Duration
	// localCreds is the file in the data dir this command uses by
	// default against the local embedded server (operator.creds unless
	// set).
	localCreds string
}

func (f *natsFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "nats-url", "", "NATS server URL(s), comma separated (default: the embedded server at --nats-listen)")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials `FILE` of this identity (JWT and nkey; 'sessionbus services add' writes one); its private inbox prefix is derived from it (default: <data-dir>/"+cmp.Or(f.localCreds, operatorCreds)+" against the local embedded server)")
	fs.StringVar(&f.ca, "nats-ca", "", "CA certificate (PEM) to check the NATS servers' TLS certificates against (a cluster with client TLS; sessionbus certs makes one)")
	fs.StringVar(&f.user, "nats-user", "", "NATS user name")
	fs.StringVar(&f.password, "nats-password", "", "NATS password (prefer the environment variable)")
	fs.StringVar(&f.listen, "nats-listen", defaultNATSListen, "address of the local embedded NATS server (serve listens there; other commands connect there unless --nats-url is set)")
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir, "data directory: JetStream store, session view, the bus's keys, the local operator's and auditor's credentials, HTTP credentials")
	fs.StringVar(&f.inbox, "nats-inbox-prefix", "", "inbox prefix for replies with --nats-user (a private inbox such as _INBOX_admin, matching the user's subscribe permission); with --nats-creds it is derived from the credential")
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
// talking to the local embedded server, the local credentials serve wrote
// in the data dir, if this user can read them.
func (f *natsFlags) options(name string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(f.timeout)}
	creds := f.creds
	if creds == "" && f.user == "" && f.url == "" {
		local := filepath.Join(f.dataDir, cmp.Or(f.localCreds, operatorCreds))
		if _, err := os.Stat(local); err == nil {
			creds = local
		}
	}
	switch {
	case creds != "":
		co, err := natsauth.Options(creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, co...)
	case f.user != "":
		opts = append(opts, nats.UserInfo(f.user, f.password))
	}
	if f.inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(f.inbox))
	}
	if f.ca != "" {
		opts = append(opts, nats.RootCAs(f.ca))
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
