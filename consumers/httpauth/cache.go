package httpauth

import (
	"sync"
	"sync/atomic"
)

const cacheShards = 16

// cache maps a token's SHA-256 digest to its verified claims. Each shard
// holds two generations: entries go into the current one; when it is full
// it becomes the previous one and the old previous one is dropped, so a
// shard never holds more than 2×perGen entries and eviction costs nothing
// per request. A hit in the previous generation moves the entry back.
type cache struct {
	perGen int
	n      atomic.Int64
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu   sync.RWMutex
	cur  map[[32]byte]*cached
	prev map[[32]byte]*cached
	_    [24]byte
}

type cached struct {
	claims *Claims
	until  int64 // exp + leeway, Unix nanoseconds
}

// newCache returns a cache of at most size entries, or nil for size <= 0.
func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	c := &cache{perGen: max(size/(2*cacheShards), 1)}
	for i := range c.shards {
		c.shards[i].cur = make(map[[32]byte]*cached)
	}
	return c
}

func (c *cache) shard(d *[32]byte) *cacheShard { return &c.shards[d[0]%cacheShards] }

func (c *cache) get(d *[32]byte) (*cached, bool) {
	s := c.shard(d)
	s.mu.RLock()
	e, ok := s.cur[*d]
	if ok {
		s.mu.RUnlock()
		return e, true
	}
	e, ok = s.prev[*d]
	s.mu.RUnlock()
	if ok {
		s.mu.Lock()
		if _, moved := s.cur[*d]; !moved {
			if _, still := s.prev[*d]; still {
				delete(s.prev, *d)
				c.n.Add(-1)
				c.insert(s, d, e)
			}
		}
		s.mu.Unlock()
	}
	return e, ok
}

func (c *cache) put(d *[32]byte, e *cached) {
	s := c.shard(d)
	s.mu.Lock()
	if _, ok := s.cur[*d]; !ok {
		c.insert(s, d, e)
	}
	s.mu.Unlock()
}

func (c *cache) remove(d *[32]byte) {
	s := c.shard(d)
	s.mu.Lock()
	if _, ok := s.cur[*d]; ok {
		delete(s.cur, *d)
		c.n.Add(-1)
	}
	if _, ok := s.prev[*d]; ok {
		delete(s.prev, *d)
		c.n.Add(-1)
	}
	s.mu.Unlock()
}

// insert adds to the current generation, turning it over when full. The
// shard's lock is held.
func (c *cache) insert(s *cacheShard, d *[32]byte, e *cached) {
	if len(s.cur) >= c.perGen {
		c.n.Add(int64(-len(s.prev)))
		s.prev = s.cur
		s.cur = make(map[[32]byte]*cached, c.perGen)
	}
	s.cur[*d] = e
	c.n.Add(1)
}

// clear drops every entry.
func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.n.Add(int64(-len(s.cur) - len(s.prev)))
		s.cur = make(map[[32]byte]*cached)
		s.prev = nil
		s.mu.Unlock()
	}
}

func (c *cache) len() int { return int(c.n.Load()) }
