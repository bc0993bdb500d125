package badgerstore

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Keys. Ids are subject-safe ([A-Za-z0-9_-]), digests hex, so ':' can
// separate parts.
var keySeq = []byte("m:seq")

func kSession(id string) []byte           { return []byte("s:" + id) }
func kDigest(d string) []byte             { return []byte("d:" + d) }
func kToken(jti string) []byte            { return []byte("j:" + jti) }
func kUser(id string) []byte              { return []byte("u:" + id) }
func kUserSession(uid, sid string) []byte { return []byte("us:" + uid + ":" + sid) }
func kKey(kid string) []byte              { return []byte("k:" + kid) }
func kAddr(acct, addr string) []byte      { return []byte("ta:" + acct + ":" + addrKey(addr)) }
func kAccount(acct string) []byte         { return []byte("tc:" + acct) }
func kAddrAll(addr string) []byte         { return []byte("tg:" + addr) }

// kDue is a deadline index entry: sorted by time, so the sweeper scans a
// prefix.
func kDue(at time.Time, sid string) []byte {
	return []byte(fmt.Sprintf("x:%020d:%s", max(at.UnixNano(), 0), sid))
}

func addrKey(addr string) string {
	if addr == "" {
		return "-"
	}
	return addr
}

func digestRef(sid string, gen uint64) []byte {
	return []byte(sid + ":" + strconv.FormatUint(gen, 10))
}

// isIPv6 tells an IPv6 address (which has colons) from junk in a key.
func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}
