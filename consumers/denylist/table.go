package denylist

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// shardCount spreads one kind's entries over independently locked maps, so
// that a sweep or a burst of revocations holds up only 1/shardCount of the
// lookups, and concurrent lookups do not share one lock word.
const shardCount = 64

// entry is one denied id. Times are Unix nanoseconds.
type entry struct {
	forget int64 // deny_until + grace: when the entry may be dropped
	before int64 // users only: tokens issued (or sessions started) before it are denied
}

// merge keeps the strongest of two revocations of the same id: the latest
// forget time and, for users, the latest revoked_before. Applying the same
// facts in any order and any number of times gives the same entry.
func (e entry) merge(o entry) entry {
	return entry{forget: max(e.forget, o.forget), before: max(e.before, o.before)}
}

type shard struct {
	mu sync.RWMutex
	m  map[string]entry
	_  [32]byte // keep neighbouring shards' locks on separate cache lines
}

// table holds the entries of one kind.
type table struct {
	seed   maphash.Seed
	n      atomic.Int64
	shards [shardCount]shard
}

func newTable() *table {
	t := &table{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]entry)
	}
	return t
}

func (t *table) shard(id string) *shard {
	return &t.shards[maphash.String(t.seed, id)&(shardCount-1)]
}

func (t *table) get(id string) (entry, bool) {
	if id == "" || t.n.Load() == 0 {
		return entry{}, false
	}
	s := t.shard(id)
	s.mu.RLock()
	e, ok := s.m[id]
	s.mu.RUnlock()
	return e, ok
}

// put stores e under id, merged with what is there.
func (t *table) put(id string, e entry) {
	s := t.shard(id)
	s.mu.Lock()
	old, ok := s.m[id]
	if ok {
		e = old.merge(e)
	} else {
		t.n.Add(1)
	}
	s.m[id] = e
	s.mu.Unlock()
}

// sweep drops the entries whose forget time is before now and returns how
// many it dropped. It locks one shard at a time.
func (t *table) sweep(now int64) int {
	dropped := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for id, e := range s.m {
			if e.forget < now {
				delete(s.m, id)
				dropped++
			}
		}
		if len(s.m) == 0 {
			// A map never shrinks; a fresh one gives the memory of a past
			// burst back.
			s.m = make(map[string]entry)
		}
		s.mu.Unlock()
	}
	t.n.Add(int64(-dropped))
	return dropped
}

func (t *table) len() int { return int(t.n.Load()) }

// keyTable holds the withdrawn signing keys: a handful of ids that every
// lookup reads, so reads take no lock (one atomic load of an immutable
// map) and the rare write copies the map.
type keyTable struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]entry]
}

func newKeyTable() *keyTable {
	t := &keyTable{}
	m := make(map[string]entry)
	t.m.Store(&m)
	return t
}

func (t *keyTable) get(id string) (entry, bool) {
	m := *t.m.Load()
	if id == "" || len(m) == 0 {
		return entry{}, false
	}
	e, ok := m[id]
	return e, ok
}

func (t *keyTable) put(id string, e entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	if o, ok := old[id]; ok {
		e = o.merge(e)
	}
	m := make(map[string]entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[id] = e
	t.m.Store(&m)
}

func (t *keyTable) sweep(now int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	m := make(map[string]entry, len(old))
	for k, v := range old {
		if v.forget >= now {
			m[k] = v
		}
	}
	t.m.Store(&m)
	return len(old) - len(m)
}

func (t *keyTable) len() int { return len(*t.m.Load()) }

// store is what the list needs of a table.
type store interface {
	get(id string) (entry, bool)
	put(id string, e entry)
	sweep(now int64) int
	len() int
}

var (
	_ store = (*table)(nil)
	_ store = (*keyTable)(nil)
)
