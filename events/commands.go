package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Command subjects served by the session manager with nats.go/micro in
// queue group QueueGroup (contract).
const (
	SubjectLogin    = "auth.cmd.login"
	SubjectRefresh  = "auth.cmd.refresh"
	SubjectLogout   = "auth.cmd.logout"
	SubjectRevoke   = "auth.cmd.revoke"   // admin
	SubjectSessions = "auth.cmd.sessions" // admin
	SubjectJWKS     = "auth.cmd.jwks"

	// Operator commands beyond the contract (operator role only), used by
	// `sessionbus users`, `keys` and `services` while the server runs.
	SubjectUsersAdd     = "auth.cmd.users.add"
	SubjectUsersList    = "auth.cmd.users.list"
	SubjectUsersGet     = "auth.cmd.users.get"
	SubjectUsersDisable = "auth.cmd.users.disable"
	SubjectUsersEnable  = "auth.cmd.users.enable"
	SubjectUsersPasswd  = "auth.cmd.users.passwd"
	SubjectKeysList     = "auth.cmd.keys.list"
	SubjectKeysRotate   = "auth.cmd.keys.rotate"
	SubjectKeysRevoke   = "auth.cmd.keys.revoke"

	SubjectServicesAdd    = "auth.cmd.services.add"
	SubjectServicesList   = "auth.cmd.services.list"
	SubjectServicesRevoke = "auth.cmd.services.revoke"

	// ServiceName is the micro service name, discoverable with $SRV.PING.
	ServiceName = "sessionbus"
	// QueueGroup shares commands between managers.
	QueueGroup = "sessionbus"
)

// CloudEvent types of command requests (contract). A request whose type
// does not fit its subject is refused with 400.
const (
	TypeLoginRequested    Type = "io.sessionbus.login.requested.v1"
	TypeRefreshRequested  Type = "io.sessionbus.refresh.requested.v1"
	TypeLogoutRequested   Type = "io.sessionbus.logout.requested.v1"
	TypeRevokeRequested   Type = "io.sessionbus.revoke.requested.v1"
	TypeSessionsRequested Type = "io.sessionbus.sessions.requested.v1"
	TypeJWKSRequested     Type = "io.sessionbus.jwks.requested.v1"
)

// CommandType returns the request type expected on a command subject, or
// "" for a subject that is not a command.
func CommandType(subject string) Type {
	switch subject {
	case SubjectLogin:
		return TypeLoginRequested
	case SubjectRefresh:
		return TypeRefreshRequested
	case SubjectLogout:
		return TypeLogoutRequested
	case SubjectRevoke:
		return TypeRevokeRequested
	case SubjectSessions:
		return TypeSessionsRequested
	case SubjectJWKS:
		return TypeJWKSRequested
	}
	if rest, ok := strings.CutPrefix(subject, "auth.cmd."); ok && strings.Count(rest, ".") == 1 {
		switch subject {
		case SubjectUsersAdd, SubjectUsersList, SubjectUsersGet, SubjectUsersDisable, SubjectUsersEnable, SubjectUsersPasswd,
			SubjectKeysList, SubjectKeysRotate, SubjectKeysRevoke,
			SubjectServicesAdd, SubjectServicesList, SubjectServicesRevoke:
			return Type("io.sessionbus." + rest + ".requested.v1")
		}
	}
	return ""
}

// UserRequest is the data of the users commands: the user by id or name,
// and the password for add and passwd (a secret, never stored).
type UserRequest struct {
	User     string `json:"user,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// KeyRequest is the data of the keys commands; Reason is revoke's (see
// RevokeRequest).
type KeyRequest struct {
	KID    string `json:"kid,omitempty"`
	Alg    string `json:"alg,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ServiceRequest is the data of the services commands: an identity on
// the bus (a service, gateway, auditor or operator) by name, and its role
// for add (default "service").
type ServiceRequest struct {
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
}

// ServiceInfo describes an identity (no secret).
type ServiceInfo struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Key     string    `json:"key"`
	Issued  time.Time `json:"issued"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// ServiceCreds is the reply of services add: the identity and its .creds
// file (a secret, sent once to the operator's private inbox and never
// stored by the manager).
type ServiceCreds struct {
	ServiceInfo
	Creds string `json:"creds"`
}

// LoginRequest is the data of a login command. It carries a secret and is
// never stored.
type LoginRequest struct {
	Username  string `json:"username"`
	Password  string `json:"password"`
	ClientID  string `json:"client_id,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	// Via is set by the manager, never read from the request: the bus
	// identity that sent it, when it may not state IP and UserAgent.
	Via string `json:"-"`
}

// RefreshRequest is the data of a refresh command.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// LogoutRequest is the data of a logout command: one of the two tokens.
type LogoutRequest struct {
	RefreshToken string `json:"refresh_token,omitempty"`
	AccessToken  string `json:"access_token,omitempty"`
}

// RevokeRequest is the data of an admin revoke command: exactly one of
// SessionID, UserID and JTI.
type RevokeRequest struct {
	SessionID string `json:"session_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	JTI       string `json:"jti,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// SessionsRequest is the data of an admin sessions command.
type SessionsRequest struct {
	UserID string `json:"user_id"`
}

// TokenReply answers login and refresh.
type TokenReply struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"` // "Bearer"
	ExpiresIn    int    `json:"expires_in"` // seconds the access token lives
	SessionID    string `json:"session_id"`
}

// SessionInfo describes one session in a sessions reply. No secrets.
type SessionInfo struct {
	SessionID       string     `json:"session_id"`
	UserID          string     `json:"user_id"`
	ClientID        string     `json:"client_id,omitempty"`
	IP              string     `json:"ip,omitempty"`
	UserAgent       string     `json:"user_agent,omitempty"`
	Status          string     `json:"status"` // active, revoked or expired
	Generation      uint64     `json:"generation"`
	CreatedAt       time.Time  `json:"created_at"`
	LastRefreshedAt *time.Time `json:"last_refreshed_at,omitempty"`
	IdleExpiresAt   time.Time  `json:"idle_expires_at"`
	ExpiresAt       time.Time  `json:"expires_at"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
	RevokeReason    string     `json:"revoke_reason,omitempty"`
}

// SessionsReply answers the sessions command.
type SessionsReply struct {
	Sessions []SessionInfo `json:"sessions"`
}

// Micro error headers of a command's error reply.
const (
	HeaderServiceError     = "Nats-Service-Error"
	HeaderServiceErrorCode = "Nats-Service-Error-Code"
)

// CommandError is a command's error reply: an HTTP-style status code (400
// malformed, 401 bad credentials or token, 403 not allowed, 404 not found,
// 409 conflict, 429 throttled, 503 overloaded) and a message that leaks
// nothing. RetryAfter is set with 429 and 503.
type CommandError struct {
	Code       int
	Message    string
	RetryAfter time.Duration
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("sessionbus: %d %s", e.Code, e.Message)
}

// ErrorData is the JSON body of an error reply.
type ErrorData struct {
	Error             string `json:"error"`
	Code              int    `json:"code"`
	RetryAfterSeconds int    `json:"retry_after_seconds,omitempty"`
}

// NewCommand builds a command request message: a binary-mode CloudEvent of
// the type the subject expects, with data as its JSON body.
func NewCommand(subject, source string, data any) (*nats.Msg, error) {
	t := CommandType(subject)
	if t == "" {
		return nil, fmt.Errorf("%w: %q is not a command subject", ErrUnknownType, subject)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	e := Event{ID: NewID(), Type: t, Source: source, Time: time.Now().UTC(), Data: b}
	switch subject {
	case SubjectLogin, SubjectRefresh, SubjectLogout, SubjectRevoke, SubjectSessions, SubjectJWKS:
		e.DataSchema = SchemaBase + "commands/" + strings.TrimPrefix(string(t), "io.sessionbus.") + ".json"
	}
	m, err := ToMsg(subject, e)
	if err != nil {
		return nil, err
	}
	delete(m.Header, HeaderMsgID) // commands are not stored
	return m, nil
}

// Request sends a command and decodes the reply into reply (which may be
// nil). An error reply becomes a *CommandError. The trace context of the
// span in ctx, if any, goes along as the W3C traceparent header.
func Request(ctx context.Context, nc *nats.Conn, subject, source string, data, reply any) error {
	m, err := NewCommand(subject, source, data)
	if err != nil {
		return err
	}
	InjectTrace(ctx, m)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	resp, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if cerr := ReplyError(resp); cerr != nil {
		return cerr
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Data, reply); err != nil {
		return fmt.Errorf("%s: decode reply: %w", subject, err)
	}
	return nil
}

// ReplyError returns the *CommandError of an error reply, or nil.
func ReplyError(resp *nats.Msg) error {
	code := resp.Header.Get(HeaderServiceErrorCode)
	if code == "" {
		return nil
	}
	e := &CommandError{Message: resp.Header.Get(HeaderServiceError)}
	e.Code, _ = strconv.Atoi(code)
	var d ErrorData
	if json.Unmarshal(resp.Data, &d) == nil && d.RetryAfterSeconds > 0 {
		e.RetryAfter = time.Duration(d.RetryAfterSeconds) * time.Second
	}
	return e
}

// ErrorCode returns the status code of a *CommandError in err's chain, or 0.
func ErrorCode(err error) int {
	var ce *CommandError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
