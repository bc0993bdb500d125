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

// ServicePermissions are the permissions of the service role: read the
// AUTH_EVENTS stream (ephemeral and durable consumers, direct gets), send
// the public commands, discover the service. They are the same as the
// "service" role in deploy/nats.
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
			"$JS.API.CONSUMER.DURABLE.CREATE.AUTH_EVENTS.>",
			"$JS.API.CONSUMER.INFO.AUTH_EVENTS.>",
			"$JS.API.CONSUMER.DELETE.AUTH_EVENTS.>",
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
