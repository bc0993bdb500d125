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

// Subjects of the service role's JetStream permissions.
const (
	// serviceConsumerCreate lets a service create an ephemeral consumer of
	// AUTH_EVENTS only when it is filtered on the revocation subjects.
	// nats.go's jetstream package names a create request with one filter
	// subject $JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>,
	// and the server refuses a request whose configured filter differs
	// from the one in its subject (JSConsumerCreateFilterSubjectMismatch)
	// or that also sets filter_subjects. Permissions match whole tokens:
	// a filter of auth.events.> or auth.events.login.> does not match
	// auth.events.*.revoked.>, and neither does an unfiltered create
	// ($JS.API.CONSUMER.CREATE.AUTH_EVENTS[.<consumer>]).
	serviceConsumerCreate = "$JS.API.CONSUMER.CREATE.AUTH_EVENTS.*.auth.events.*.revoked.>"
	// serviceConsumerInfo is the deny-list's freshness probe.
	serviceConsumerInfo = "$JS.API.CONSUMER.INFO.AUTH_EVENTS.*"
	// serviceConsumerNext are the pull requests of the ordered consumer.
	// Like the info, it names a consumer, whosever it is: a consumer
	// another role created is out of a service's reach only as long as
	// its name cannot be guessed (services cannot list consumers).
	serviceConsumerNext = "$JS.API.CONSUMER.MSG.NEXT.AUTH_EVENTS.*"
)

// ServicePermissions are the permissions of the service role: exactly what
// consumers/denylist and consumers/httpauth need, and the public commands.
//
//   - Receive the revocation facts (auth.events.*.revoked.>) and the key
//     facts (auth.events.key.>) with core subscriptions, and create
//     ephemeral consumers of AUTH_EVENTS filtered on the revocation
//     subjects (the deny-list's ordered consumer), ask for their info and
//     pull from them. Ordered consumers acknowledge nothing and pull
//     consumers have no flow control, so neither $JS.ACK nor $JS.FC.
//   - Send auth.cmd.login, refresh, logout and jwks; discover the service
//     ($SRV.>).
//
// Nothing else of AUTH_EVENTS: no other fact by any route — no core
// subscription to auth.events.>, no consumer unfiltered or filtered on
// anything but the revocations, no stream info (its request may ask for
// per-subject counts, and permissions cannot look into a request body),
// no direct or stream message get. The login.failed facts are on
// auth.events.login.failed.<user id or "unknown">, so reading them would
// tell whether a username exists; session facts hold IPs and user
// agents. Services can neither list, delete nor create durable consumers
// (an audit's durable is not theirs), publish facts or read the manager's
// KV buckets. Operators and auditors read the whole stream with the
// manager's credentials (embedded server) or the admin and audit users
// (deploy/nats).
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
			serviceConsumerCreate,
			serviceConsumerInfo,
			serviceConsumerNext,
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			"_INBOX.>", "auth.events.*.revoked.>", "auth.events.key.>",
		}},
	}
}
