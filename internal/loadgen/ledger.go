package loadgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
)

// Ledger records what a run asked for and what the server acknowledged,
// to be checked against the stream (Check). It is safe for concurrent
// use.
type Ledger struct {
	mu       sync.Mutex
	jtis     map[string]string // acknowledged access token jti -> session
	sessions map[string]bool   // sessions of acknowledged logins
	users    map[string]bool   // the run's users
	asked    map[string]bool   // sessions the run asked to revoke
	askedU   map[string]int    // users the run asked to revoke, how often
	revoked  map[string]bool   // acknowledged session revocations
	revokedU map[string]int    // acknowledged user revocations, how many
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{jtis: map[string]string{}, sessions: map[string]bool{}, users: map[string]bool{},
		asked: map[string]bool{}, askedU: map[string]int{}, revoked: map[string]bool{}, revokedU: map[string]int{}}
}

// User records a user of the run: its sessions are the run's.
func (l *Ledger) User(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users[id] = true
}

// Token records an acknowledged login or refresh reply.
func (l *Ledger) Token(r events.TokenReply, login bool) error {
	c, err := TokenOf(r.AccessToken)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jtis[c.JTI] = r.SessionID
	if login {
		l.sessions[r.SessionID] = true
	}
	return nil
}

// Ask records a revocation the run is about to ask for (before it is
// sent: a revocation whose reply was lost was still asked for).
func (l *Ledger) Ask(req events.RevokeRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if req.SessionID != "" {
		l.asked[req.SessionID] = true
	}
	if req.UserID != "" {
		l.askedU[req.UserID]++
	}
}

// Revoked records an acknowledged session revocation.
func (l *Ledger) Revoked(sid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.revoked[sid] = true
}

// RevokedUser records an acknowledged revocation of a user (each is one
// user.revoked fact, however often the user is revoked).
func (l *Ledger) RevokedUser(uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.revokedU[uid]++
}

// Counts returns the acknowledged tokens (logins and refreshes) and
// session revocations.
func (l *Ledger) Counts() (tokens, revocations int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.jtis), len(l.revoked)
}

// Report is the outcome of a Check.
type Report struct {
	// Facts read from the stream.
	Facts int
	// Missing are acknowledged operations with no fact; Duplicated those
	// with more than one.
	Missing, Duplicated []string
	// Unasked are revocations of the run's sessions (or users) that the
	// run did not ask for, with their reasons: honest users logged out.
	Unasked []string
	// Checked is how many acknowledged operations were checked.
	Checked int
}

// Err is nil when the report finds nothing wrong.
func (r Report) Err() error {
	var errs []error
	if len(r.Missing) > 0 {
		errs = append(errs, fmt.Errorf("%d acknowledged operations missing from the stream: %s", len(r.Missing), head(r.Missing)))
	}
	if len(r.Duplicated) > 0 {
		errs = append(errs, fmt.Errorf("%d acknowledged operations stored more than once: %s", len(r.Duplicated), head(r.Duplicated)))
	}
	if len(r.Unasked) > 0 {
		errs = append(errs, fmt.Errorf("%d revocations nobody asked for: %s", len(r.Unasked), head(r.Unasked)))
	}
	return errors.Join(errs...)
}

func head(s []string) string {
	sort.Strings(s)
	if len(s) > 5 {
		return strings.Join(s[:5], ", ") + ", …"
	}
	return strings.Join(s, ", ")
}

// Check reads AUTH_EVENTS from since on with direct gets (nc: an
// identity that may read it, the operator or audit role) and compares
// it with the ledger: every acknowledged login and refresh has exactly
// one fact with its access token, every acknowledged revocation its
// session.revoked fact, and no session or user of the run was revoked
// unasked. Direct gets may be answered by a replica that lags, so
// missing facts are looked for again until ctx ends.
func (l *Ledger) Check(ctx context.Context, nc *nats.Conn, since time.Time) (Report, error) {
	var last Report // of the last whole read
	for haveLast := false; ; haveLast = true {
		r, err := l.check(ctx, nc, since)
		if err != nil && haveLast && ctx.Err() != nil {
			// ctx ended during a read again: the last whole one stands.
			return last, nil
		}
		if err != nil || len(r.Missing) == 0 {
			return r, err
		}
		last = r
		select {
		case <-ctx.Done():
			return r, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (l *Ledger) check(ctx context.Context, nc *nats.Conn, since time.Time) (Report, error) {
	jtiFacts := map[string]int{}
	revokedFacts := map[string][]string{} // session -> reasons
	userRevoked := map[string][]string{}
	owner := map[string]string{} // session -> user
	var rep Report
	req := jsbus.BatchRequest{StartTime: since.Add(-time.Second), Batch: 256}
	for {
		b, err := jsbus.DirectBatch(ctx, nc, events.StreamName, req)
		if err != nil {
			return rep, err
		}
		for _, m := range b.Msgs {
			rep.Facts++
			req.Seq = jsbus.MsgSeq(m) + 1
			e, err := events.FromMsg(jsbus.StoredMsg(m))
			if err != nil {
				continue
			}
			var d struct {
				SessionID string `json:"session_id"`
				UserID    string `json:"user_id"`
				AccessJTI string `json:"access_jti"`
				Reason    string `json:"reason"`
			}
			if e.DataAs(&d) != nil {
				continue
			}
			switch e.Type {
			case events.TypeSessionCreated, events.TypeSessionRefreshed:
				if d.AccessJTI != "" {
					jtiFacts[d.AccessJTI]++
				}
				if e.Type == events.TypeSessionCreated {
					owner[d.SessionID] = d.UserID
				}
			case events.TypeSessionRevoked:
				revokedFacts[d.SessionID] = append(revokedFacts[d.SessionID], d.Reason)
			case events.TypeUserRevoked:
				userRevoked[d.UserID] = append(userRevoked[d.UserID], d.Reason)
			}
		}
		if len(b.Msgs) == 0 || b.Pending == 0 {
			break
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for jti, sid := range l.jtis {
		rep.Checked++
		switch n := jtiFacts[jti]; {
		case n == 0:
			rep.Missing = append(rep.Missing, "token "+jti+" of session "+sid)
		case n > 1:
			rep.Duplicated = append(rep.Duplicated, fmt.Sprintf("token %s of session %s (%d facts)", jti, sid, n))
		}
	}
	for sid := range l.revoked {
		rep.Checked++
		if len(revokedFacts[sid]) == 0 {
			rep.Missing = append(rep.Missing, "revocation of session "+sid)
		}
	}
	// A user's revocations have no id of their own to match: as many
	// facts as acknowledged at least, and no more than were asked (a
	// lost reply's revocation is still stored).
	for uid, n := range l.revokedU {
		rep.Checked += n
		switch facts := len(userRevoked[uid]); {
		case facts < n:
			rep.Missing = append(rep.Missing, fmt.Sprintf("%d of %d revocations of user %s", n-facts, n, uid))
		case facts > l.askedU[uid]:
			rep.Duplicated = append(rep.Duplicated, fmt.Sprintf("user %s (%d facts for %d revocations asked)", uid, facts, l.askedU[uid]))
		}
	}
	for sid, reasons := range revokedFacts {
		ours := l.sessions[sid] || l.users[owner[sid]]
		if ours && !l.asked[sid] && l.askedU[owner[sid]] == 0 {
			rep.Unasked = append(rep.Unasked, fmt.Sprintf("session %s (%s)", sid, strings.Join(reasons, ",")))
		}
	}
	for uid, reasons := range userRevoked {
		if l.users[uid] && l.askedU[uid] == 0 {
			rep.Unasked = append(rep.Unasked, fmt.Sprintf("user %s (%s)", uid, strings.Join(reasons, ",")))
		}
	}
	return rep, nil
}

// Claims are the claims of an access token the load needs.
type Claims struct {
	Subject, SessionID, JTI, KeyID string
	IssuedAt, AuthTime             time.Time
}

// TokenOf reads the claims of an access token's payload, unverified (the
// run trusts the token it just received).
func TokenOf(jwt string) (Claims, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("not a JWT")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Claims{}, err
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, err
	}
	var h struct {
		Kid string `json:"kid"`
	}
	var c struct {
		Sub      string `json:"sub"`
		Sid      string `json:"sid"`
		Jti      string `json:"jti"`
		Iat      int64  `json:"iat"`
		AuthTime int64  `json:"auth_time"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return Claims{}, err
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return Claims{}, err
	}
	return Claims{Subject: c.Sub, SessionID: c.Sid, JTI: c.Jti, KeyID: h.Kid,
		IssuedAt: time.Unix(c.Iat, 0), AuthTime: time.Unix(c.AuthTime, 0)}, nil
}

// Client sends the session commands over NATS and records what was
// acknowledged in its Ledger (if set).
type Client struct {
	NC     *nats.Conn
	Ledger *Ledger
	// Source is the ce-source of the commands (default /sessionbus/bench).
	Source string
}

func (c *Client) source() string {
	if c.Source == "" {
		return "/sessionbus/bench"
	}
	return c.Source
}

// Login logs user in from address ip.
func (c *Client) Login(ctx context.Context, user, password, ip string) (events.TokenReply, error) {
	var r events.TokenReply
	if err := events.Request(ctx, c.NC, events.SubjectLogin, c.source(), events.LoginRequest{Username: user, Password: password, IP: ip}, &r); err != nil {
		return r, err
	}
	if c.Ledger != nil {
		if err := c.Ledger.Token(r, true); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Refresh redeems a refresh token.
func (c *Client) Refresh(ctx context.Context, token string) (events.TokenReply, error) {
	var r events.TokenReply
	if err := events.Request(ctx, c.NC, events.SubjectRefresh, c.source(), events.RefreshRequest{RefreshToken: token}, &r); err != nil {
		return r, err
	}
	if c.Ledger != nil {
		if err := c.Ledger.Token(r, false); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Revoke sends an admin revocation (the identity needs the operator role).
func (c *Client) Revoke(ctx context.Context, req events.RevokeRequest) error {
	if c.Ledger != nil {
		c.Ledger.Ask(req)
	}
	if err := events.Request(ctx, c.NC, events.SubjectRevoke, c.source(), req, nil); err != nil {
		return err
	}
	switch {
	case c.Ledger == nil:
	case req.SessionID != "":
		c.Ledger.Revoked(req.SessionID)
	case req.UserID != "":
		c.Ledger.RevokedUser(req.UserID)
	}
	return nil
}

// Account is a user the run created.
type Account struct{ ID, Name, Password string }

// AddUser creates a throwaway user (the identity needs the operator role).
func (c *Client) AddUser(ctx context.Context) (Account, error) {
	a := Account{Name: "bench-" + strings.ToLower(events.NewID()), Password: "bench-" + events.NewID()}
	var u struct {
		ID string `json:"id"`
	}
	if err := events.Request(ctx, c.NC, events.SubjectUsersAdd, c.source(), events.UserRequest{Username: a.Name, Password: a.Password}, &u); err != nil {
		return a, fmt.Errorf("create bench user: %w", err)
	}
	a.ID = u.ID
	if c.Ledger != nil {
		c.Ledger.User(a.ID)
	}
	return a, nil
}
