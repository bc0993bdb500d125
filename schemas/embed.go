package schemas

import "embed"

// FS holds every schema file at its path under Base, and asyncapi.yaml.
//
//go:embed *.json commands/*.json asyncapi.yaml
var FS embed.FS

// Base is the URI prefix of every schema's $id: a schema's $id is Base
// plus its path in FS. It equals events.SchemaBase (a test checks it).
const Base = "https://sessionbus.io/schemas/"

// eventFiles maps each fact type to its schema file. Kept here rather than
// derived from package events, so that this package imports nothing of
// sessionbus; a test checks it against events.Types and events.SchemaFile.
var eventFiles = map[string]string{
	"io.sessionbus.session.created.v1":   "session.created.v1.json",
	"io.sessionbus.session.refreshed.v1": "session.refreshed.v1.json",
	"io.sessionbus.session.revoked.v1":   "session.revoked.v1.json",
	"io.sessionbus.user.revoked.v1":      "user.revoked.v1.json",
	"io.sessionbus.token.revoked.v1":     "token.revoked.v1.json",
	"io.sessionbus.login.failed.v1":      "login.failed.v1.json",
	"io.sessionbus.key.rotated.v1":       "key.rotated.v1.json",
	"io.sessionbus.key.revoked.v1":       "key.revoked.v1.json",
}

// commandFiles maps each command subject to its request and reply schemas.
var commandFiles = map[string]struct{ request, reply string }{
	"auth.cmd.login":    {"commands/login.requested.v1.json", "commands/token.reply.v1.json"},
	"auth.cmd.refresh":  {"commands/refresh.requested.v1.json", "commands/token.reply.v1.json"},
	"auth.cmd.logout":   {"commands/logout.requested.v1.json", "commands/empty.reply.v1.json"},
	"auth.cmd.revoke":   {"commands/revoke.requested.v1.json", "commands/empty.reply.v1.json"},
	"auth.cmd.sessions": {"commands/sessions.requested.v1.json", "commands/sessions.reply.v1.json"},
	"auth.cmd.jwks":     {"commands/jwks.requested.v1.json", "commands/jwks.reply.v1.json"},
}

// errorFile is the schema of the body of every command's error reply.
const errorFile = "commands/error.reply.v1.json"

// EventSchema returns the path in FS of the schema of a fact type's data
// (its $id is Base+path), and whether the type has one.
func EventSchema(eventType string) (path string, ok bool) {
	path, ok = eventFiles[eventType]
	return path, ok
}

// CommandSchemas returns the paths in FS of the request and reply schemas
// of a command subject, and whether the subject is a command.
func CommandSchemas(subject string) (request, reply string, ok bool) {
	f, ok := commandFiles[subject]
	return f.request, f.reply, ok
}
