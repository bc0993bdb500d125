package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Authority holds the operator and account keys of a sessionbus bus and
// the register of the identities it issued. It signs the account JWTs the
// server trusts and the user JWTs of .creds files.
//
// On disk (Dir, 0700): operator.nk, sys.nk, auth.nk and clients.nk hold
// the nkey seeds (0600); identities.json the register: name, role, public
// key, when issued and when revoked. Nothing else is needed to rebuild the
// account JWTs, so they are never stored.
type Authority struct {
	dir      string
	operator nkeys.KeyPair
	accounts map[string]nkeys.KeyPair // by account name

	mu    sync.Mutex
	ids   []Identity
	clock func() time.Time
}

// Identity is one issued credential.
type Identity struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Key     string    `json:"key"` // public user nkey
	Issued  time.Time `json:"issued"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Active reports whether the identity has not been revoked.
func (i Identity) Active() bool { return i.Revoked.IsZero() }

const (
	registerFile = "identities.json"
	operatorName = "sessionbus"
)

var seedFiles = map[string]string{"": "operator.nk", AccountSys: "sys.nk", AccountAuth: "auth.nk", AccountClients: "clients.nk"}

// Open loads the authority in dir. With create, a missing authority is
// created (keys generated, dir 0700, files 0600); without, a missing one
// is ErrNoAuthority.
func Open(dir string, create bool) (*Authority, error) {
	a := &Authority{dir: dir, accounts: map[string]nkeys.KeyPair{}, clock: time.Now}
	if _, err := os.Stat(filepath.Join(dir, seedFiles[""])); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("%w in %s", ErrNoAuthority, dir)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("authority dir: %w", err)
		}
	}
	for acc, file := range seedFiles {
		kp, err := loadOrCreateSeed(filepath.Join(dir, file), acc == "", create)
		if err != nil {
			return nil, err
		}
		if acc == "" {
			a.operator = kp
		} else {
			a.accounts[acc] = kp
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, registerFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("identity register: %w", err)
	default:
		if err := json.Unmarshal(b, &a.ids); err != nil {
			return nil, fmt.Errorf("identity register %s: %w", filepath.Join(dir, registerFile), err)
		}
	}
	return a, nil
}

func loadOrCreateSeed(path string, operator, create bool) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrBadKey, path)
		}
		return kp, nil
	}
	if !errors.Is(err, os.ErrNotExist) || !create {
		return nil, fmt.Errorf("authority key: %w", err)
	}
	var kp nkeys.KeyPair
	if operator {
		kp, err = nkeys.CreateOperator()
	} else {
		kp, err = nkeys.CreateAccount()
	}
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(path, seed); err != nil {
		return nil, fmt.Errorf("authority key: %w", err)
	}
	return kp, nil
}

// writeFileSync writes b to path atomically (temp file, fsync, rename),
// readable by the owner only.
func writeFileSync(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Dir is where the authority keeps its files.
func (a *Authority) Dir() string { return a.dir }

// OperatorJWT is the self-signed operator JWT the server trusts.
func (a *Authority) OperatorJWT() (string, error) {
	pub, _ := a.operator.PublicKey()
	oc := jwt.NewOperatorClaims(pub)
	oc.Name = operatorName
	oc.SystemAccount = a.AccountKey(AccountSys)
	return oc.Encode(a.operator)
}

// AccountKey is the public key of the named account.
func (a *Authority) AccountKey(name string) string {
	pub, _ := a.accounts[name].PublicKey()
	return pub
}

// AccountJWTs returns the signed JWT of every account, by public key.
// They carry the revocations of the register, so a server given them
// refuses every revoked credential.
func (a *Authority) AccountJWTs() (map[string]string, error) {
	out := map[string]string{}
	for _, name := range []string{AccountSys, AccountAuth, AccountClients} {
		j, err := a.AccountJWT(name)
		if err != nil {
			return nil, err
		}
		out[a.AccountKey(name)] = j
	}
	return out, nil
}

// AccountJWT returns the signed JWT of the named account.
func (a *Authority) AccountJWT(name string) (string, error) {
	ac := jwt.NewAccountClaims(a.AccountKey(name))
	ac.Name = name
	auth := a.AccountKey(AccountAuth)
	switch name {
	case AccountAuth:
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		for _, e := range exports() {
			ac.Exports.Add(e)
		}
	case AccountClients:
		// JetStream stays off: clients reach the streams only through
		// these imports, and own nothing that could be exhausted.
		for _, e := range exports() {
			im := &jwt.Import{
				Name: e.Name, Subject: e.Subject, Account: auth, Type: e.Type,
				// The manager learns who asked (Nats-Request-Info).
				Share: e.Type == jwt.Service,
			}
			if e.Subject == revocationsInfo {
				// Under a subject of its own: in an account without
				// JetStream the server answers every $JS.API.STREAM
				// request itself ("not enabled").
				im.LocalSubject = RevocationsInfoSubject
			}
			ac.Imports.Add(im)
		}
	}
	a.mu.Lock()
	for _, id := range a.ids {
		if !id.Revoked.IsZero() && id.Role.Account() == name {
			ac.RevokeAt(id.Key, id.Revoked)
		}
	}
	a.mu.Unlock()
	return ac.Encode(a.operator)
}

// exports are what AUTH offers CLIENTS. User permissions then decide
// which client may use which.
func exports() []*jwt.Export {
	svc := func(subject string, rt jwt.ResponseType) *jwt.Export {
		return &jwt.Export{Name: subject, Subject: jwt.Subject(subject), Type: jwt.Service, ResponseType: rt}
	}
	var out []*jwt.Export
	out = append(out,
		svc("auth.cmd.>", jwt.ResponseTypeSingleton),
		svc("$SRV.>", jwt.ResponseTypeStream),
		&jwt.Export{Name: "facts", Subject: "auth.events.>", Type: jwt.Stream},
	)
	out = append(out, svc(revocationsInfo, jwt.ResponseTypeSingleton))
	for _, s := range []string{streamEvents, streamRevocations} {
		out = append(out,
			svc("$JS.API.DIRECT.GET."+s, jwt.ResponseTypeStream),
			svc("$JS.API.DIRECT.GET."+s+".>", jwt.ResponseTypeStream),
		)
	}
	return out
}

// RevocationsInfoSubject is where a client of CLIENTS asks for the info of
// AUTH_REVOCATIONS: how far its sourcing from AUTH_EVENTS has come, which
// is what tells a deny-list that it holds every revocation stored.
const RevocationsInfoSubject = "auth.revocations.info"

const revocationsInfo = "$JS.API.STREAM.INFO." + streamRevocations

// nameRE is what an identity name may be: it shows in logs and in the
// actor of facts.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Issue creates an identity and returns its .creds file. Names are unique
// among the identities that are not revoked.
func (a *Authority) Issue(name string, role Role) ([]byte, Identity, error) {
	if !nameRE.MatchString(name) {
		return nil, Identity{}, fmt.Errorf("%w: %q (lower-case letters, digits, '.', '_' and '-', at most 63)", ErrBadName, name)
	}
	if !role.Valid() {
		return nil, Identity{}, fmt.Errorf("%w: %q", ErrUnknownRole, role)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range a.ids {
		if id.Name == name && id.Active() {
			return nil, Identity{}, fmt.Errorf("%w: %q", ErrExists, name)
		}
	}
	creds, id, err := a.mint(name, role, 0)
	if err != nil {
		return nil, Identity{}, err
	}
	a.ids = append(a.ids, id)
	if err := a.saveLocked(); err != nil {
		a.ids = a.ids[:len(a.ids)-1]
		return nil, Identity{}, err
	}
	return creds, id, nil
}

// Ephemeral mints a credential that is not registered and expires after
// ttl: the embedded server's own in-process connections (the manager, the
// setup step) use it, so no long-lived manager secret exists on disk.
func (a *Authority) Ephemeral(name string, role Role, ttl time.Duration) (userJWT string, seed []byte, err error) {
	creds, _, err := a.mint(name, role, ttl)
	if err != nil {
		return "", nil, err
	}
	j, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", nil, err
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return "", nil, err
	}
	seed, err = kp.Seed()
	return j, seed, err
}

func (a *Authority) mint(name string, role Role, ttl time.Duration) ([]byte, Identity, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, Identity{}, err
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	now := a.clock()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuedAt = now.Unix()
	if ttl > 0 {
		uc.Expires = now.Add(ttl).Unix()
	}
	uc.Tags.Add(RoleTag + string(role))
	uc.Permissions = role.Permissions(pub)
	uc.IssuerAccount = ""
	j, err := uc.Encode(a.accounts[role.Account()])
	if err != nil {
		return nil, Identity{}, err
	}
	creds, err := jwt.FormatUserConfig(j, seed)
	if err != nil {
		return nil, Identity{}, err
	}
	return creds, Identity{Name: name, Role: role, Key: pub, Issued: now.UTC()}, nil
}

// Identities returns the register, oldest first.
func (a *Authority) Identities() []Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ids)
}

// Revoke revokes the active identity called name and returns it. The
// caller then gives the server the account's new JWT (AccountJWT), which
// closes the identity's open connections.
func (a *Authority) Revoke(name string) (Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, id := range a.ids {
		if id.Name == name && id.Active() {
			// A second later than now, so that a JWT issued in this very
			// second is covered too (revocations compare whole seconds).
			a.ids[i].Revoked = a.clock().UTC().Add(time.Second).Truncate(time.Second)
			if err := a.saveLocked(); err != nil {
				a.ids[i].Revoked = time.Time{}
				return Identity{}, err
			}
			return a.ids[i], nil
		}
	}
	return Identity{}, fmt.Errorf("%w: %q", ErrNoIdentity, name)
}

func (a *Authority) saveLocked() error {
	b, err := json.MarshalIndent(a.ids, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(a.dir, registerFile), b); err != nil {
		return fmt.Errorf("identity register: %w", err)
	}
	return nil
}
