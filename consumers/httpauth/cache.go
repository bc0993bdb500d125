package httpauth

import (
	"crypto/subtle"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"
)

const cacheShards = 16

// cache maps a token to its verified claims. It is keyed by a seeded
// 64-bit hash of the token (hash/maphash, a random seed per cache, so
// nobody can aim at a key) and an entry is used only if its token is the
// presented one, compared in constant time: the hash only finds the
// candidate, the comparison decides. This costs a fraction of a SHA-256
// per request at the price of keeping the token (about 400 bytes) in the
// entry.
//
// Each shard
// holds two generations: entries go into the current one; when it is full
// it becomes the previous one and the old previous one is dropped, so a
// shard never holds more than 2×perGen entries and eviction costs nothing
// per request. A hit in the previous generation moves the entry back.
type cache struct {
	seed   maphash.Seed
	perGen int
	n      atomic.Int64
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu   sync.RWMutex
	cur  map[uint64]*cached
	prev map[uint64]*cached
	_    [24]byte
}

type cached struct {
	token  string
	claims *Claims
	until  int64 // exp + leeway, Unix nanoseconds
}

// is reports whether e caches token, in constant time.
func (e *cached) is(token string) bool {
	return subtle.ConstantTimeCompare(bytesOf(e.token), bytesOf(token)) == 1
}

// bytesOf views a string's bytes without copying.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// key returns the cache key of a token.
func (c *cache) key(token string) uint64 { return maphash.String(c.seed, token) }

// newCache returns a cache of at most size entries, or nil for size <= 0.
func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	c := &cache{seed: maphash.MakeSeed(), perGen: max(size/(2*cacheShards), 1)}
	for i := range c.shards {
		c.shards[i].cur = make(map[uint64]*cached)
	}
	return c
}

func (c *cache) shard(k uint64) *cacheShard { return &c.shards[k%cacheShards] }

// get returns the entry of token, if it is cached.
func (c *cache) get(k uint64, token string) (*cached, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.cur[k]
	if ok {
		s.mu.RUnlock()
		return e, e.is(token)
	}
	e, ok = s.prev[k]
	s.mu.RUnlock()
	if !ok || !e.is(token) {
		return nil, false
	}
	s.mu.Lock()
	if _, moved := s.cur[k]; !moved {
		if _, still := s.prev[k]; still {
			delete(s.prev, k)
			c.n.Add(-1)
			c.insert(s, k, e)
		}
	}
	s.mu.Unlock()
	return e, true
}

// put caches e under k, replacing an entry of another token with the same
// key (a 64-bit collision: rare, and only a lost cache entry).
func (c *cache) put(k uint64, e *cached) {
	s := c.shard(k)
	s.mu.Lock()
	if old, ok := s.cur[k]; !ok {
		c.insert(s, k, e)
	} else if old.token != e.token {
		s.cur[k] = e
	}
	s.mu.Unlock()
}

func (c *cache) remove(k uint64) {
	s := c.shard(k)
	s.mu.Lock()
	if _, ok := s.cur[k]; ok {
		delete(s.cur, k)
		c.n.Add(-1)
	}
	if _, ok := s.prev[k]; ok {
		delete(s.prev, k)
		c.n.Add(-1)
	}
	s.mu.Unlock()
}

// insert adds to the current generation, turning it over when full. The
// shard's lock is held.
func (c *cache) insert(s *cacheShard, k uint64, e *cached) {
	if len(s.cur) >= c.perGen {
		c.n.Add(int64(-len(s.prev)))
		s.prev = s.cur
		s.cur = make(map[uint64]*cached, c.perGen)
	}
	s.cur[k] = e
	c.n.Add(1)
}

// clear drops every entry.
func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.n.Add(int64(-len(s.cur) - len(s.prev)))
		s.cur = make(map[uint64]*cached)
		s.prev = nil
		s.mu.Unlock()
	}
}

func (c *cache) len() int { return int(c.n.Load()) }
