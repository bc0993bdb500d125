package natsauth

import (
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Subjects of the system account where a server with a full (nats-based)
// resolver takes a new account JWT: the server checks that the operator
// signed it, stores it, passes it to the other servers, and closes the
// connections of every identity it revokes.
const (
	ClaimsUpdateSubject = "$SYS.REQ.CLAIMS.UPDATE"
)

// SysUser mints a short-lived credential in the system account that may
// only push account JWTs (ClaimsUpdateSubject) and read the replies in
// its private inbox. It is not registered: cluster tools (`sessionbus
// auth push`, `sessionbus services revoke --auth-dir`) mint one per run.
func (a *Authority) SysUser(name string, ttl time.Duration) (userJWT string, seed []byte, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, err
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	now := a.clock()
	uc.IssuedAt = now.Unix()
	if ttl > 0 {
		uc.Expires = now.Add(ttl).Unix()
	}
	uc.Permissions.Pub.Allow.Add(ClaimsUpdateSubject)
	uc.Permissions.Sub.Allow.Add(InboxPrefix(pub) + ".>")
	j, err := uc.Encode(a.accounts[AccountSys])
	if err != nil {
		return "", nil, err
	}
	seed, err = kp.Seed()
	return j, seed, err
}
