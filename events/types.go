package events

import (
	"strings"
)

// Type is a CloudEvent type of a fact. Its suffix names the version of the
// data's shape; a new incompatible shape gets a new Type.
type Type string

// The eight facts on the stream (contract).
const (
	TypeSessionCreated   Type = "io.sessionbus.session.created.v1"
	TypeSessionRefreshed Type = "io.sessionbus.session.refreshed.v1"
	TypeSessionRevoked   Type = "io.sessionbus.session.revoked.v1"
	TypeUserRevoked      Type = "io.sessionbus.user.revoked.v1"
	TypeTokenRevoked     Type = "io.sessionbus.token.revoked.v1"
	TypeLoginFailed      Type = "io.sessionbus.login.failed.v1"
	TypeKeyRotated       Type = "io.sessionbus.key.rotated.v1"
	TypeKeyRevoked       Type = "io.sessionbus.key.revoked.v1"
)

// Stream and subject names (contract).
const (
	// StreamName is the JetStream stream holding every fact.
	StreamName = "AUTH_EVENTS"
	// SubjectPrefix starts every fact's subject.
	SubjectPrefix = "auth.events."
	// SubjectAll matches every fact.
	SubjectAll = "auth.events.>"
	// SubjectRevocations matches the four revocation facts.
	SubjectRevocations = "auth.events.*.revoked.>"
	// SubjectKeys matches the key facts (rotated and revoked).
	SubjectKeys = "auth.events.key.>"
	// RevocationsStreamName is the stream services read: the revocation
	// and key facts of AUTH_EVENTS, sourced from it, kept for
	// RevocationsMaxAge. It holds nothing a service may not see, so
	// services read it with direct gets and need no consumer.
	RevocationsStreamName = "AUTH_REVOCATIONS"
	// UnknownUser stands for the user id in the subject of a failed login
	// whose username matched no user.
	UnknownUser = "unknown"
)

// SchemaBase is the URI prefix of every event's dataschema; the rest is the
// schema file's name in the schemas package (for example
// session.created.v1.json).
const SchemaBase = "https://sessionbus.io/schemas/"

// typeInfo describes a known Type.
type typeInfo struct {
	aggregate, action, version string
}

var known = map[Type]typeInfo{
	TypeSessionCreated:   {"session", "created", "v1"},
	TypeSessionRefreshed: {"session", "refreshed", "v1"},
	TypeSessionRevoked:   {"session", "revoked", "v1"},
	TypeUserRevoked:      {"user", "revoked", "v1"},
	TypeTokenRevoked:     {"token", "revoked", "v1"},
	TypeLoginFailed:      {"login", "failed", "v1"},
	TypeKeyRotated:       {"key", "rotated", "v1"},
	TypeKeyRevoked:       {"key", "revoked", "v1"},
}

// Types lists every known fact type, in the order of the contract.
func Types() []Type {
	return []Type{
		TypeSessionCreated, TypeSessionRefreshed, TypeSessionRevoked,
		TypeUserRevoked, TypeTokenRevoked, TypeLoginFailed,
		TypeKeyRotated, TypeKeyRevoked,
	}
}

// Known reports whether t is a fact type this version understands.
func (t Type) Known() bool { _, ok := known[t]; return ok }

// IsRevocation reports whether t is one of the four revocation facts.
func (t Type) IsRevocation() bool {
	i, ok := known[t]
	return ok && i.action == "revoked"
}

// Subject returns the NATS subject of a fact of type t about the aggregate
// with the given id: auth.events.<aggregate>.<action>.<id>.
// It returns "" for an unknown type or an id that is not subject-safe.
func (t Type) Subject(id string) string {
	i, ok := known[t]
	if !ok || !ValidID(id) {
		return ""
	}
	return SubjectPrefix + i.aggregate + "." + i.action + "." + id
}

// DataSchema returns the dataschema URI of t's data, or "" if t is unknown.
func (t Type) DataSchema() string {
	if !t.Known() {
		return ""
	}
	return SchemaBase + SchemaFile(t)
}

// SchemaFile returns the file name of the JSON Schema of t's data, such as
// session.created.v1.json, or "" if t is unknown.
func SchemaFile(t Type) string {
	i, ok := known[t]
	if !ok {
		return ""
	}
	return i.aggregate + "." + i.action + "." + i.version + ".json"
}

// SessionSubjects returns the subject filter matching every fact about one
// session; publishers use it for optimistic concurrency per session.
func SessionSubjects(sessionID string) string {
	return SubjectPrefix + "session.*." + sessionID
}

// ParseSubject splits a fact subject into its aggregate, action and id.
// ok is false when subject is not of the form auth.events.<a>.<b>.<id>.
func ParseSubject(subject string) (aggregate, action, id string, ok bool) {
	rest, found := strings.CutPrefix(subject, SubjectPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || !ValidID(parts[2]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// ValidID reports whether id can be the last token of a subject: 1 to 128
// characters from [A-Za-z0-9_-]. ULIDs, UUIDs, JWK thumbprints and the
// word "unknown" qualify; usernames are never used as ids.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
