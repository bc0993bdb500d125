package embedded

import "github.com/nats-io/nats-server/v2/server"

// Role names of the embedded server's users.
const (
	// ManagerUser is the user of session managers and of operators' admin
	// commands: it may do anything.
	ManagerUser = "sessionbus-manager"
	// ServiceUser is the role of every connection without credentials.
	ServiceUser = "sessionbus-service"
)

// ManagerInboxPrefix is the inbox prefix of manager-role connections.
// Replies to them (tokens, user lists) go to _INBOX_sessionbus.…, which
// the service role may not subscribe to (NATS "private inboxes").
const ManagerInboxPrefix = "_INBOX_sessionbus"

// ServicePermissions are the permissions of the service role: read the
// AUTH_EVENTS stream with ephemeral (ordered) consumers and direct gets,
// send the public commands, discover the service. Services can neither
// create durable consumers nor delete any (an audit's durable is not
// theirs to remove), neither publish facts nor read the manager's KV
// buckets.
//
// Every connection in this role shares the inbox namespace _INBOX.>, so
// on the embedded server one anonymous local client could read another's
// login replies: the embedded server's anonymous role is for programs
// one trusts on the same host. In a cluster, give each service its own
// user and private inbox prefix (deploy/nats).
func ServicePermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"auth.cmd.login", "auth.cmd.refresh", "auth.cmd.logout", "auth.cmd.jwks",
			"$SRV.>",
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO.AUTH_EVENTS",
			"$JS.API.STREAM.MSG.GET.AUTH_EVENTS",
			"$JS.API.DIRECT.GET.AUTH_EVENTS",
			"$JS.API.DIRECT.GET.AUTH_EVENTS.>",
			"$JS.API.CONSUMER.CREATE.AUTH_EVENTS",
			"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.>",
			"$JS.API.CONSUMER.INFO.AUTH_EVENTS.>",
			"$JS.API.CONSUMER.LIST.AUTH_EVENTS",
			"$JS.API.CONSUMER.NAMES.AUTH_EVENTS",
			"$JS.API.CONSUMER.MSG.NEXT.AUTH_EVENTS.>",
			"$JS.ACK.AUTH_EVENTS.>",
			"$JS.FC.AUTH_EVENTS.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			"_INBOX.>", "auth.events.>",
		}},
	}
}
