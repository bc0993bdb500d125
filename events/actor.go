package events

import "regexp"

// Kinds of actor: who asked for a fact.
const (
	// ActorIdentity is a bus identity: Name is its credential's name,
	// Role its role (the NATS server states both; see natsauth). A
	// manager that does not require identities (never one that serve
	// starts) records a command without one as Name "anonymous".
	ActorIdentity = "identity"
	// ActorAdmin is a credential of the admin HTTP API: Name is the
	// credential's name, never the credential itself.
	ActorAdmin = "admin"
	// ActorUser is the session's own user, by one of the session's
	// tokens (logout, RFC 7009 revocation): Name is the user id, Via the
	// bus identity that carried the request over NATS.
	ActorUser = "user"
	// ActorSystem is the manager on its own: idle and absolute timeouts,
	// refresh-token reuse, a session ended because the account changed
	// while it was being created, the first signing key. It has no name.
	ActorSystem = "system"
	// ActorLocal is a program that called the manager in-process rather
	// than through its NATS or HTTP API (a Go program embedding it). It
	// has no name. sessionbus's own commands never are: with the server
	// stopped, `sessionbus users|keys` still send their commands over NATS
	// as an operator identity.
	ActorLocal = "local"
)

// Actor names who asked for a fact: the identity that sent the command,
// or the system. The manager derives it from how the command reached it
// (the server-stated bus identity, the admin credential that matched),
// never from the request's content.
type Actor struct {
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
	Via  string `json:"via,omitempty"`
}

// System is the actor of what the manager does on its own.
var System = Actor{Kind: ActorSystem}

// actorNameRE is what a name in an actor may be: a bus identity's name, an
// admin credential's name or a user id. It
// holds no space, control character or quote, so it prints as it is.
var actorNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ValidActorName reports whether s can be the name of an actor (or its
// role or via): 1 to 128 characters of [A-Za-z0-9._-], not starting with
// '.' or '-'.
func ValidActorName(s string) bool { return actorNameRE.MatchString(s) }

// Valid reports whether a is an actor a fact may hold: a known kind, the
// names it needs, each a ValidActorName.
func (a Actor) Valid() bool {
	for _, s := range []string{a.Name, a.Role, a.Via} {
		if s != "" && !ValidActorName(s) {
			return false
		}
	}
	switch a.Kind {
	case ActorIdentity:
		return a.Name != "" && a.Via == ""
	case ActorAdmin:
		return a.Name != "" && a.Role == "" && a.Via == ""
	case ActorUser:
		return a.Name != "" && a.Role == ""
	case ActorSystem:
		return a.Name == "" && a.Role == "" && a.Via == ""
	case ActorLocal:
		return a.Name == "" && a.Role == "" && a.Via == ""
	}
	return false
}

// String is the actor as `sessionbus audit` and `events tail` show it:
// kind:name, with the role in parentheses and via after a comma, without
// spaces ("identity:ops-1(operator)", "admin:admin-token",
// "user:01J…,via=web-1", "system"). The zero Actor, that of a fact
// written before actors were recorded, is "".
func (a Actor) String() string {
	if a.Kind == "" {
		return ""
	}
	s := a.Kind
	if a.Name != "" {
		s += ":" + a.Name
	}
	if a.Role != "" {
		s += "(" + a.Role + ")"
	}
	if a.Via != "" {
		s += ",via=" + a.Via
	}
	return s
}
