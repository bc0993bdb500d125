package natsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/session"
)

// Config of the service.
type Config struct {
	// Version is the service version reported by $SRV.INFO.
	Version string
	// Timeout bounds one command (default 10s).
	Timeout time.Duration
	// MaxInFlight bounds the commands handled at once (default 1024).
	// NATS delivers an endpoint's requests one at a time; each runs in
	// its own goroutine so that a slow one (a password hash, a publish
	// waiting for fsync) does not hold up the others. Past the bound a
	// request waits for a slot.
	MaxInFlight int
	// RequireCaller refuses commands whose sender the server did not
	// state (Nats-Request-Info): set when the bus has identities, so that
	// nothing reaches the manager anonymously.
	RequireCaller bool
	// Identities serves the services commands; nil answers them 403.
	Identities Identities
	// TracerProvider makes a span of every command (default: the global
	// provider, a no-op unless the program set one).
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// TracerName names the tracer of this package's spans.
const TracerName = "github.com/sessionbus/sessionbus/session/natsapi"

// Service is the running NATS API.
type Service struct {
	micro.Service
	api *api
}

// Stop stops taking requests and waits for those in flight to finish.
func (s *Service) Stop() error {
	err := s.Service.Stop()
	s.api.wg.Wait()
	return err
}

// Start registers the service on nc. Stop it with Stop, which lets
// in-flight requests finish.
func Start(nc *nats.Conn, m *session.Manager, cfg Config) (*Service, error) {
	if cfg.Version == "" {
		cfg.Version = "0.0.0"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1024
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        events.ServiceName,
		Version:     cfg.Version,
		Description: "sessionbus session manager: login, refresh, logout, revocation, JWKS",
		QueueGroup:  events.QueueGroup,
	})
	if err != nil {
		return nil, fmt.Errorf("start micro service: %w", err)
	}
	a := &api{nc: nc, m: m, cfg: cfg, slots: make(chan struct{}, cfg.MaxInFlight), tracer: cfg.TracerProvider.Tracer(TracerName)}
	for _, ep := range []struct {
		name, subject string
		h             func(context.Context, events.Event) (any, error)
	}{
		{"login", events.SubjectLogin, a.login},
		{"refresh", events.SubjectRefresh, a.refresh},
		{"logout", events.SubjectLogout, a.logout},
		{"revoke", events.SubjectRevoke, a.revoke},
		{"sessions", events.SubjectSessions, a.sessions},
		{"jwks", events.SubjectJWKS, nil},
		{"users-add", events.SubjectUsersAdd, a.usersAdd},
		{"users-list", events.SubjectUsersList, a.usersList},
		{"users-get", events.SubjectUsersGet, a.usersGet},
		{"users-disable", events.SubjectUsersDisable, a.usersDisable(true)},
		{"users-enable", events.SubjectUsersEnable, a.usersDisable(false)},
		{"users-passwd", events.SubjectUsersPasswd, a.usersPasswd},
		{"keys-list", events.SubjectKeysList, a.keysList},
		{"keys-rotate", events.SubjectKeysRotate, a.keysRotate},
		{"keys-revoke", events.SubjectKeysRevoke, a.keysRevoke},
		{"services-add", events.SubjectServicesAdd, a.servicesAdd},
		{"services-list", events.SubjectServicesList, a.servicesList},
		{"services-revoke", events.SubjectServicesRevoke, a.servicesRevoke},
	} {
		var h handlerFunc
		if ep.subject == events.SubjectJWKS {
			h = a.jwks
		} else {
			h = a.handler(ep.subject, ep.h)
		}
		if err := svc.AddEndpoint(ep.name, a.concurrent(a.traced(ep.subject, h)), micro.WithEndpointSubject(ep.subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("add endpoint %s: %w", ep.subject, err)
		}
	}
	// The server has the subscriptions when Start returns: a request sent
	// right after finds the service.
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("start micro service: %w", err)
	}
	return &Service{Service: svc, api: a}, nil
}

// callerKey is the context key of the command's caller.
type callerKey struct{}

type api struct {
	nc     *nats.Conn
	m      *session.Manager
	cfg    Config
	slots  chan struct{}
	wg     sync.WaitGroup
	tracer trace.Tracer
}

// handlerFunc handles one request in the context of its span, and
// returns the status code it answered with (0 for success).
type handlerFunc func(context.Context, micro.Request) int

// traced makes h a micro handler that runs in a span named after the
// subject, a child of the trace context the request carries (the W3C
// traceparent header, or the CloudEvents extension's ce-traceparent). A
// malformed one is ignored: the span then starts a new trace.
func (a *api) traced(subject string, h handlerFunc) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		ctx := context.Background()
		if sc := events.MsgTrace(nats.Header(r.Headers())); sc.IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
		ctx, span := a.tracer.Start(ctx, subject, serverSpan...)
		defer span.End()
		code := h(ctx, r)
		if span.IsRecording() {
			span.SetAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", subject))
			if code != 0 {
				span.SetAttributes(attribute.Int("sessionbus.error_code", code))
				if code >= 500 {
					span.SetStatus(codes.Error, http.StatusText(code))
				}
			}
		}
	})
}

// respond publishes the reply on the connection itself rather than
// through micro.Request: micro reads the request's state when the
// endpoint's handler returns, which it does before a concurrent handler
// answers. Error replies carry micro's error headers, so clients see the
// same thing; micro's per-endpoint error counts and processing times do
// not include them (sessionbus's own metrics do).
func (a *api) respond(r micro.Request, body []byte, h nats.Header) error {
	if r.Reply() == "" {
		return nil
	}
	return a.nc.PublishMsg(&nats.Msg{Subject: r.Reply(), Header: h, Data: body})
}

// concurrent runs h for each request in its own goroutine, at most
// MaxInFlight at once.
func (a *api) concurrent(h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		a.slots <- struct{}{}
		a.wg.Add(1)
		go func() {
			defer func() { <-a.slots; a.wg.Done() }()
			h.Handle(r)
		}()
	})
}

// handler decodes the CloudEvent, checks its type, runs h and replies.
func (a *api) handler(subject string, h func(context.Context, events.Event) (any, error)) handlerFunc {
	want := events.CommandType(subject)
	return func(ctx context.Context, r micro.Request) int {
		c, err := a.authorize(r)
		if err != nil {
			return a.fail(r, err)
		}
		e, err := decode(r)
		if err == nil && e.Type != want {
			err = fmt.Errorf("%w: type %q does not fit %s (want %s)", session.ErrInvalidInput, e.Type, subject, want)
		}
		if err != nil {
			return a.fail(r, err)
		}
		ctx, cancel := context.WithTimeout(session.WithActor(context.WithValue(ctx, callerKey{}, c), c.actor()), a.cfg.Timeout)
		defer cancel()
		out, err := h(ctx, e)
		if err != nil {
			return a.fail(r, err)
		}
		if rt, ok := out.(replyThen); ok {
			out = rt.reply
			defer func() {
				_ = a.nc.Flush() // the server has routed the reply
				rt.then()
			}()
		}
		b, err := json.Marshal(out)
		if err != nil {
			return a.fail(r, err)
		}
		if err := a.respond(r, b, nil); err != nil {
			a.cfg.Logger.Warn("reply failed", "subject", subject, "err", err)
		}
		return 0
	}
}

// replyThen is a reply with a step to run once the server has routed it.
// Giving the server a new JWT for the AUTH account drops the routes of
// replies in flight from AUTH to CLIENTS (nats-server rebuilds the
// account's exports, reply mappings included), so revoking an AUTH
// identity over the bus would lose its own reply if it came first.
type replyThen struct {
	reply any
	then  func()
}

func decode(r micro.Request) (events.Event, error) {
	m := &nats.Msg{Subject: r.Subject(), Header: nats.Header(r.Headers()), Data: r.Data()}
	if !binaryMode(m.Header) && len(m.Data) <= events.MaxEventSize {
		// Structured mode: the envelope may not say a thing twice (two
		// "data" or "type" members) any more than its data may.
		if err := events.CheckKeys(m.Data); err != nil {
			return events.Event{}, fmt.Errorf("%w: %w", session.ErrInvalidInput, err)
		}
	}
	e, err := events.FromMsg(m)
	if err != nil {
		return events.Event{}, fmt.Errorf("%w: %w", session.ErrInvalidInput, err)
	}
	return e, nil
}

// binaryMode reports a ce-specversion header, in any case, as
// events.FromMsg looks for it.
func binaryMode(h nats.Header) bool {
	for k, v := range h {
		if strings.EqualFold(k, events.HeaderSpecVersion) && len(v) > 0 && v[0] != "" {
			return true
		}
	}
	return false
}

// data decodes the event's data strictly into v: no unknown field, no key
// twice or in two cases (events.DecodeStrict), nothing after the value.
func data(e events.Event, v any) error {
	if err := events.DecodeStrict(e.Data, v); err != nil {
		return fmt.Errorf("%w: data: %v", session.ErrInvalidInput, err)
	}
	return nil
}

// fail sends the error reply of err and returns its status code.
func (a *api) fail(r micro.Request, err error) int {
	code, msg := session.StatusCode(err)
	if code == 500 {
		a.cfg.Logger.Error("command failed", "subject", r.Subject(), "err", err)
	}
	body := events.ErrorData{Error: msg, Code: code}
	if ra := session.RetryAfter(err); ra > 0 {
		body.RetryAfterSeconds = int((ra + time.Second - 1) / time.Second)
	}
	b, _ := json.Marshal(body)
	h := nats.Header{events.HeaderServiceError: {msg}, events.HeaderServiceErrorCode: {strconv.Itoa(code)}}
	if rerr := a.respond(r, b, h); rerr != nil {
		a.cfg.Logger.Warn("error reply failed", "subject", r.Subject(), "err", rerr)
	}
	return code
}

func (a *api) login(ctx context.Context, e events.Event) (any, error) {
	var req events.LoginRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	// Only a gateway states the end user's address; any other identity
	// is recorded, and throttled, as itself.
	if c, _ := ctx.Value(callerKey{}).(caller); c.name != "" && c.role != natsauth.RoleGateway {
		req.Via = c.name
	}
	return a.m.Login(ctx, req)
}

func (a *api) refresh(ctx context.Context, e events.Event) (any, error) {
	var req events.RefreshRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return a.m.Refresh(ctx, req.RefreshToken)
}

func (a *api) logout(ctx context.Context, e events.Event) (any, error) {
	var req events.LogoutRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return struct{}{}, a.m.Logout(ctx, req)
}

func (a *api) revoke(ctx context.Context, e events.Event) (any, error) {
	var req events.RevokeRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return struct{}{}, a.m.Revoke(ctx, req)
}

func (a *api) sessions(ctx context.Context, e events.Event) (any, error) {
	var req events.SessionsRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	ss, err := a.m.Sessions(ctx, req.UserID)
	return events.SessionsReply{Sessions: ss}, err
}

// jwks answers an empty request or a jwks.requested CloudEvent.
func (a *api) jwks(_ context.Context, r micro.Request) int {
	if _, err := a.authorize(r); err != nil {
		return a.fail(r, err)
	}
	if len(r.Data()) > 0 || r.Headers().Get(events.HeaderSpecVersion) != "" {
		e, err := decode(r)
		if err == nil && e.Type != events.TypeJWKSRequested {
			err = fmt.Errorf("%w: type %q does not fit %s", session.ErrInvalidInput, e.Type, events.SubjectJWKS)
		}
		if err != nil {
			return a.fail(r, err)
		}
	}
	_ = a.respond(r, a.m.JWKS(), nats.Header{"Content-Type": {"application/jwk-set+json"}})
	return 0
}

func (a *api) usersAdd(ctx context.Context, e events.Event) (any, error) {
	var req events.UserRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return a.m.AddUser(ctx, req.Username, req.Password)
}

func (a *api) usersList(ctx context.Context, e events.Event) (any, error) {
	users, err := a.m.ListUsers(ctx)
	return map[string]any{"users": users}, err
}

// usersGet finds one user by id or name: the CLI resolves a name given
// to sessions or revoke --user with it.
func (a *api) usersGet(ctx context.Context, e events.Event) (any, error) {
	var req events.UserRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return a.m.LookupUser(ctx, req.User)
}

func (a *api) usersDisable(disabled bool) func(context.Context, events.Event) (any, error) {
	return func(ctx context.Context, e events.Event) (any, error) {
		var req events.UserRequest
		if err := data(e, &req); err != nil {
			return nil, err
		}
		return a.m.SetDisabled(ctx, req.User, disabled)
	}
}

func (a *api) usersPasswd(ctx context.Context, e events.Event) (any, error) {
	var req events.UserRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return struct{}{}, a.m.SetPassword(ctx, req.User, req.Password)
}

func (a *api) keysList(ctx context.Context, e events.Event) (any, error) {
	keys, err := a.m.ListKeys(ctx)
	return map[string]any{"keys": keys}, err
}

func (a *api) keysRotate(ctx context.Context, e events.Event) (any, error) {
	var req events.KeyRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return a.m.RotateKey(ctx, req.Alg)
}

func (a *api) keysRevoke(ctx context.Context, e events.Event) (any, error) {
	var req events.KeyRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	return struct{}{}, a.m.RevokeKey(ctx, req.KID, req.Reason)
}

// serverSpan is the command span's option, made once.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
