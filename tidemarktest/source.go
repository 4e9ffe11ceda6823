// Package tidemarktest holds test helpers for Tidemark, as httptest does
// for net/http: an in-memory source and an in-memory target, stand-ins for
// an API and a database in tests and examples, with counters of what
// Tidemark asked of them, a log of what their handlers were told, and
// faults to inject.
package tidemarktest

import (
	"cmp"
	"context"
	"errors"
	"iter"
	"maps"
	"slices"
	"sync"

	"github.com/tidemark/tidemark"
)

// Source is an in-memory source: a map of rows, each with an ordinal that
// grows on every change. It counts List and Get calls and can be told to
// fail. It is safe for concurrent use.
type Source[K cmp.Ordered, V any] struct {
	mu        sync.Mutex
	rows      map[K]*sourceRow[V]
	clock     tidemark.Ordinal
	noOrdinal bool

	lists    int
	gets     int
	getsOf   map[K]int
	failGet  func(K) error
	listFail *listFailure
	onGet    func(K)
}

type sourceRow[V any] struct {
	value   V
	ordinal tidemark.Ordinal
}

type listFailure struct {
	after int
	err   error
}

// NewSource returns an empty source.
func NewSource[K cmp.Ordered, V any]() *Source[K, V] {
	return &Source[K, V]{rows: make(map[K]*sourceRow[V]), getsOf: make(map[K]int)}
}

// WithoutOrdinals makes the source list every row with NoOrdinal, as a
// source with no change counter would, and returns it.
func (s *Source[K, V]) WithoutOrdinals() *Source[K, V] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noOrdinal = true
	return s
}

// Set inserts or updates the row at key, giving it a new ordinal.
func (s *Source[K, V]) Set(key K, value V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock++
	s.rows[key] = &sourceRow[V]{value: value, ordinal: s.clock}
}

// Touch gives the row at key a new ordinal without changing its value; it
// reports whether the row exists.
func (s *Source[K, V]) Touch(key K) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[key]
	if ok {
		s.clock++
		r.ordinal = s.clock
	}
	return ok
}

// Delete removes the row at key.
func (s *Source[K, V]) Delete(key K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rows, key)
}

// Keys returns the keys of the rows, sorted.
func (s *Source[K, V]) Keys() []K {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.rows))
}

// Value returns the row at key.
func (s *Source[K, V]) Value(key K) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[key]
	if !ok {
		var zero V
		return zero, false
	}
	return r.value, true
}

// FailGet makes Get return fn(key) when it is not nil; nil stops it.
func (s *Source[K, V]) FailGet(fn func(key K) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failGet = fn
}

// OnGet calls fn with the key at the start of every Get; nil stops it.
func (s *Source[K, V]) OnGet(fn func(key K)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onGet = fn
}

// FailListAfter makes List yield err after listing n rows; a nil err stops
// it.
func (s *Source[K, V]) FailListAfter(n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.listFail = nil
		return
	}
	s.listFail = &listFailure{after: n, err: err}
}

// Lists returns the number of List calls.
func (s *Source[K, V]) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

// Gets returns the number of Get calls.
func (s *Source[K, V]) Gets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// GetsOf returns the number of Get calls for each key asked for.
func (s *Source[K, V]) GetsOf() map[K]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.getsOf)
}

// ResetCounts sets the call counters to zero.
func (s *Source[K, V]) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists, s.gets = 0, 0
	s.getsOf = make(map[K]int)
}

// ProvidesOrdinal implements tidemark.OrdinalProvider.
func (s *Source[K, V]) ProvidesOrdinal() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.noOrdinal
}

// errListingStopped is yielded when the consumer's context ends mid-listing.
var errListingStopped = errors.New("memory: listing stopped")

// List implements tidemark.Source: the rows in key order, as they were
// when List was called.
func (s *Source[K, V]) List(ctx context.Context) iter.Seq2[tidemark.Listed[K], error] {
	s.mu.Lock()
	s.lists++
	keys := slices.Sorted(maps.Keys(s.rows))
	listed := make([]tidemark.Listed[K], len(keys))
	for i, k := range keys {
		listed[i] = tidemark.Listed[K]{Key: k, Ordinal: s.rows[k].ordinal}
		if s.noOrdinal {
			listed[i].Ordinal = tidemark.NoOrdinal
		}
	}
	fail := s.listFail
	s.mu.Unlock()
	return func(yield func(tidemark.Listed[K], error) bool) {
		for i, l := range listed {
			if fail != nil && i == fail.after {
				yield(tidemark.Listed[K]{}, fail.err)
				return
			}
			if ctx.Err() != nil {
				yield(tidemark.Listed[K]{}, errors.Join(errListingStopped, ctx.Err()))
				return
			}
			if !yield(l, nil) {
				return
			}
		}
		if fail != nil && fail.after >= len(listed) {
			yield(tidemark.Listed[K]{}, fail.err)
		}
	}
}

// Get implements tidemark.Source.
func (s *Source[K, V]) Get(ctx context.Context, key K) (tidemark.Fetched[V], error) {
	s.mu.Lock()
	s.gets++
	s.getsOf[key]++
	fail, onGet := s.failGet, s.onGet
	r, ok := s.rows[key]
	var f tidemark.Fetched[V]
	if ok {
		f = tidemark.Fetched[V]{Exists: true, Value: r.value, Ordinal: r.ordinal}
		if s.noOrdinal {
			f.Ordinal = tidemark.NoOrdinal
		}
	}
	s.mu.Unlock()
	if onGet != nil {
		onGet(key)
	}
	if fail != nil {
		if err := fail(key); err != nil {
			return tidemark.Fetched[V]{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return tidemark.Fetched[V]{}, err
	}
	return f, nil
}
