package httpauth

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/denylist"
)

// ServiceConfig is what one protected service needs on one NATS
// connection: a deny-list fed by AUTH_EVENTS, the manager's keys, and the
// middleware that consults both.
type ServiceConfig struct {
	// Conn is the service's NATS connection (its credentials come from
	// `sessionbus services add`). Required.
	Conn *nats.Conn
	// Name is the ce-source of the service's JWKS requests (default
	// /consumers/httpauth).
	Name string
	// Auth configures the middleware. Its Keys and DenyList are the
	// service's own: leave them nil.
	Auth Config
	// DenyList configures the deny-list. Its JetStream defaults to one on
	// Conn, its Logger, Registerer and TracerProvider to Auth's.
	DenyList denylist.Config
	// Keys configures the key set. Its Source defaults to NATSSource(Conn,
	// Name), Watch to Conn and Logger to Auth's.
	Keys KeySetConfig
}

// Service is the deny-list, the key set and the middleware of a protected
// service, started and judged ready as one. Its Authenticator is the
// middleware: srv.Middleware(h).
type Service struct {
	*Authenticator
	DenyList *denylist.List
	Keys     *KeySet
}

// NewService builds the three parts; Run starts them.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: ServiceConfig.Conn is required", ErrInvalidConfig)
	}
	if cfg.Auth.Keys != nil || cfg.Auth.DenyList != nil {
		return nil, fmt.Errorf("%w: ServiceConfig.Auth.Keys and DenyList are the service's own", ErrInvalidConfig)
	}
	dc := cfg.DenyList
	if dc.JetStream == nil {
		js, err := jetstream.New(cfg.Conn)
		if err != nil {
			return nil, fmt.Errorf("httpauth: jetstream: %w", err)
		}
		dc.JetStream = js
	}
	if dc.Logger == nil {
		dc.Logger = cfg.Auth.Logger
	}
	if dc.Registerer == nil {
		dc.Registerer = cfg.Auth.Registerer
	}
	if dc.TracerProvider == nil {
		dc.TracerProvider = cfg.Auth.TracerProvider
	}
	dl, err := denylist.New(dc)
	if err != nil {
		return nil, err
	}
	kc := cfg.Keys
	if kc.Source == nil {
		kc.Source = NATSSource(cfg.Conn, cfg.Name)
	}
	if kc.Watch == nil {
		kc.Watch = cfg.Conn
	}
	if kc.Logger == nil {
		kc.Logger = cfg.Auth.Logger
	}
	keys, err := NewKeySet(kc)
	if err != nil {
		return nil, err
	}
	ac := cfg.Auth
	ac.Keys, ac.DenyList = keys, dl
	auth, err := New(ac)
	if err != nil {
		return nil, err
	}
	return &Service{Authenticator: auth, DenyList: dl, Keys: keys}, nil
}

// Run runs the deny-list and the key set until ctx ends (it then returns
// nil) or one of them stops with an error (Run then stops the other and
// returns that error).
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- s.DenyList.Run(ctx) }()
	go func() { errc <- s.Keys.Run(ctx) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
		cancel()
	}
	return first
}

// Ready reports whether the service can judge tokens: the deny-list has
// caught up with the stream and the keys are loaded. It is what a
// readiness probe answers.
func (s *Service) Ready() bool {
	select {
	case <-s.DenyList.Ready():
		return len(s.Keys.KeyIDs()) > 0
	default:
		return false
	}
}
