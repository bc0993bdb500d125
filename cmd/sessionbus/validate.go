package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// validate checks the manager's settings, before anything is created or
// started: a mistake in them changes nothing.
func (f *managerFlags) validate() error {
	var errs []error
	c := f.sessionConfig()
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if f.syncInterval < 0 {
		errs = append(errs, fmt.Errorf("--sync-interval %s is negative", f.syncInterval))
	}
	if f.streamRepl < 1 || f.streamRepl > 5 {
		errs = append(errs, fmt.Errorf("--stream-replicas %d not in 1..5", f.streamRepl))
	}
	if f.streamMaxAge < 0 {
		errs = append(errs, fmt.Errorf("--stream-max-age %s is negative", f.streamMaxAge))
	} else if f.streamMaxAge > 0 && f.streamMaxAge < c.SessionLifetime() {
		errs = append(errs, fmt.Errorf("--stream-max-age %s is shorter than a session can matter (--absolute-timeout + --access-ttl + 1m = %s)", f.streamMaxAge, c.SessionLifetime()))
	}
	if f.nats.url == "" {
		if err := checkAddr("--nats-listen", f.nats.listen); err != nil {
			errs = append(errs, err)
		}
	}
	if f.nats.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s must be positive", f.nats.timeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration, nothing was started:\n  %s", strings.ReplaceAll(errors.Join(errs...).Error(), "\n", "\n  "))
	}
	return nil
}

// checkAddr checks a host:port address to listen on ("" is allowed by
// the callers that take it to mean none).
func checkAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q is not host:port: %v", flag, addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		if _, lerr := net.LookupPort("tcp", port); lerr != nil {
			return fmt.Errorf("%s %q: port %q is not a number in 0..65535", flag, addr, port)
		}
	}
	return nil
}

// addForOperator adds the manager's flags to an operator command (users,
// keys, services). Its --help shows the connection flags; the server's
// settings, which the in-process manager of an offline command takes
// (from the environment, like serve), are hidden.
func (f *managerFlags) addForOperator(fs *pflag.FlagSet) {
	f.add(fs)
	var conn pflag.FlagSet
	new(natsFlags).add(&conn)
	fs.VisitAll(func(fl *pflag.Flag) {
		if conn.Lookup(fl.Name) == nil {
			_ = fs.MarkHidden(fl.Name)
		}
	})
}
