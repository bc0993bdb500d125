package natsauth

import (
	"fmt"

	"github.com/nats-io/jwt/v2"
)

// Role is what an identity may do on the bus. Each role lives in one
// account and has exactly the permissions of its row in the README's role
// table; the server enforces them.
type Role string

// The roles.
const (
	// RoleManager serves the commands, publishes facts and owns its view
	// consumers, the KV buckets and the snapshot bucket. It cannot
	// create, change or delete streams, nor purge any but the snapshot
	// bucket's.
	RoleManager Role = "manager"
	// RoleSetup creates and upgrades the streams and buckets: serve uses
	// it once at start on the embedded server; `sessionbus setup` in a
	// cluster.
	RoleSetup Role = "setup"
	// RoleAudit reads the whole stream and keeps its own durable
	// consumers.
	RoleAudit Role = "audit"
	// RoleOperator sends the user, key, service and revoke commands and
	// reads the whole stream, without consumers (direct gets and live
	// subscriptions).
	RoleOperator Role = "operator"
	// RoleService follows the revocation and key facts and calls login,
	// refresh, logout and jwks.
	RoleService Role = "service"
	// RoleGateway is a service that may state the end user's ip and
	// user_agent on login.
	RoleGateway Role = "gateway"
)

// Roles lists every role.
var Roles = []Role{RoleManager, RoleSetup, RoleAudit, RoleOperator, RoleService, RoleGateway}

// Account names. AUTH holds the streams, the buckets and the identities
// that use JetStream on them; CLIENTS holds everybody else, with JetStream
// off, and reaches AUTH only through its imports. A client in CLIENTS can
// therefore create no consumer and use up no JetStream limit at all.
const (
	AccountSys     = "SYS"
	AccountAuth    = "AUTH"
	AccountClients = "CLIENTS"
)

// Stream and bucket names the permissions refer to (the same as
// events.StreamName, events.RevocationsStreamName and
// snapstore.Bucket; repeated here so that this package stays a leaf).
const (
	streamEvents      = "AUTH_EVENTS"
	streamRevocations = "AUTH_REVOCATIONS"
	// bucketSnapshots is the Object Store bucket of the view snapshots
	// (session/snapstore.Bucket), streamSnapshots its stream.
	bucketSnapshots = "sessionbus_snapshots"
	streamSnapshots = "OBJ_" + bucketSnapshots
)

// RoleTag is the JWT tag that carries an identity's role ("role:service").
// The manager reads it from the Nats-Request-Info header the server adds
// to every request that crosses from CLIENTS to AUTH.
const RoleTag = "role:"

// Account returns the account of the role.
func (r Role) Account() string {
	switch r {
	case RoleManager, RoleSetup, RoleAudit:
		return AccountAuth
	default:
		return AccountClients
	}
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	for _, k := range Roles {
		if r == k {
			return true
		}
	}
	return false
}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("%w: %q (one of manager, setup, audit, operator, service, gateway)", ErrUnknownRole, s)
	}
	return r, nil
}

// InboxPrefix is the private inbox prefix of the identity whose public
// user key is pub. Only that identity may subscribe below it, so nobody
// else receives its replies.
func InboxPrefix(pub string) string { return "_INBOX." + pub }

// Permissions returns the permissions of an identity with role r and
// public user key pub.
func (r Role) Permissions(pub string) jwt.Permissions {
	inbox := InboxPrefix(pub) + ".>"
	var pubAllow, pubDeny, subAllow []string
	switch r {
	case RoleManager:
		pubAllow = []string{
			"auth.events.>", // facts
			// JetStream: read the streams and buckets and own its
			// consumers; it may change no stream, and purge only old
			// snapshots' chunks in the snapshot bucket.
			"$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
			"$JS.API.STREAM.MSG.GET.>", "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.>",
			"$JS.API.STREAM.PURGE." + streamSnapshots,
			"$KV.>", "$O." + bucketSnapshots + ".>",
			"$JS.ACK.>", "$JS.FC.>",
			"$SRV.>",
			"_INBOX.>", "_R_.>", // replies, to its own account and across the imports
		}
		pubDeny = []string{
			"$JS.API.CONSUMER.DURABLE.CREATE.>",
			"$JS.API.CONSUMER.LIST.>", "$JS.API.CONSUMER.NAMES.>",
		}
		subAllow = []string{inbox, "auth.cmd.>", "$SRV.>"}
	case RoleSetup:
		pubAllow = []string{"$JS.API.>"}
		pubDeny = []string{"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>"}
		subAllow = []string{inbox}
	case RoleAudit:
		pubAllow = []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + streamEvents,
			"$JS.API.STREAM.MSG.GET." + streamEvents,
			"$JS.API.DIRECT.GET." + streamEvents, "$JS.API.DIRECT.GET." + streamEvents + ".>",
			"$JS.API.CONSUMER.CREATE." + streamEvents, "$JS.API.CONSUMER.CREATE." + streamEvents + ".>",
			"$JS.API.CONSUMER.DURABLE.CREATE." + streamEvents + ".>",
			"$JS.API.CONSUMER.INFO." + streamEvents + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + streamEvents + ".>",
			"$JS.API.CONSUMER.DELETE." + streamEvents + ".>",
			"$JS.ACK." + streamEvents + ".>", "$JS.FC.>",
		}
		subAllow = []string{inbox}
	case RoleOperator:
		pubAllow = append(readStream(streamEvents), "auth.cmd.>", "$SRV.>")
		subAllow = []string{inbox, "auth.events.>"}
	case RoleService, RoleGateway:
		pubAllow = append(readStream(streamRevocations),
			"auth.cmd.login", "auth.cmd.refresh", "auth.cmd.logout", "auth.cmd.jwks")
		subAllow = []string{inbox, "auth.events.*.revoked.>", "auth.events.key.>"}
	}
	var p jwt.Permissions
	p.Pub.Allow.Add(pubAllow...)
	p.Pub.Deny.Add(pubDeny...)
	p.Sub.Allow.Add(subAllow...)
	return p
}

// readStream are the requests that read a stream without a consumer:
// direct gets (one message, or a batch), and the revocations' info.
func readStream(stream string) []string {
	return []string{
		RevocationsInfoSubject,
		"$JS.API.DIRECT.GET." + stream, "$JS.API.DIRECT.GET." + stream + ".>",
	}
}
