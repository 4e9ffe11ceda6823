package engine

import "sync"

// idSet is a compact set of row ids: a bitmap in pages of 32,768 ids, so
// that remembering every row seen in a listing of a million rows takes
// about 128 KiB.
type idSet struct {
	mu    sync.Mutex
	pages map[int64]*[512]uint64
	n     int64
}

const idPageBits = 512 * 64

func (s *idSet) add(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pages == nil {
		s.pages = make(map[int64]*[512]uint64)
	}
	p := s.pages[id/idPageBits]
	if p == nil {
		p = new([512]uint64)
		s.pages[id/idPageBits] = p
	}
	off := id % idPageBits
	if p[off/64]&(1<<(off%64)) == 0 {
		p[off/64] |= 1 << (off % 64)
		s.n++
	}
}

// len returns the number of ids in the set.
func (s *idSet) len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *idSet) has(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pages[id/idPageBits]
	if p == nil {
		return false
	}
	off := id % idPageBits
	return p[off/64]&(1<<(off%64)) != 0
}

// flights keeps the keys of rows being updated, so that no key is updated
// twice at once.
type flights struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func newFlights() *flights { return &flights{keys: make(map[string]struct{})} }

// acquire claims key; false if it is in flight.
func (f *flights) acquire(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.keys[key]; busy {
		return false
	}
	f.keys[key] = struct{}{}
	return true
}

// release frees key.
func (f *flights) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}

// pending counts a source's rows handed on and not yet finished, so that
// the deletion scan can wait for them.
type pending struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero; nil while n is zero
}

func (p *pending) add(n int) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		p.idle = make(chan struct{})
	}
	p.n += n
}

func (p *pending) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 {
		close(p.idle)
		p.idle = nil
	}
}

// wait returns a channel closed once nothing is pending.
func (p *pending) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.idle
}
