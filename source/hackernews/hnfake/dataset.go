package hnfake

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Thread is a top-level item (a story, job or poll) with its comment tree,
// as the fake serves it from items/{id} and lists it from search_by_date.
//
// Empty strings stand for JSON null where the API writes null: Text (the
// story text, HTML), URL and Author. A Thread passed to or returned by a
// Dataset is never shared with the Dataset: it is copied both ways.
type Thread struct {
	// ID is the item id; it must be positive and unique among threads and
	// comments.
	ID int64
	// Type is the Algolia type and tag: "story" (the default when empty),
	// "job" or "poll".
	Type string
	// Title is plain text, as HN stores it ("'" and "&" are not escaped).
	Title string
	// URL is the link; "" means a text post (null in items, omitted from a
	// search hit, which then carries the ask_hn tag).
	URL string
	// Author is the user name; "" is written as null.
	Author string
	// Text is the story text in HN's HTML ("<p>", "&#x27;"…); "" is null.
	Text string
	// CreatedAt is when the thread was posted; the zero time means "now"
	// when the thread is put into a Dataset.
	CreatedAt time.Time
	// UpdatedAt is the search index's updated_at, the ordinal incremental
	// clients compare. See Dataset.Put and Dataset.Edit for how it moves.
	UpdatedAt time.Time
	// Points is the score.
	Points int
	// Tags are extra Algolia _tags written after the derived ones (type,
	// author_…, story_…, show_hn or ask_hn), for example "front_page".
	Tags []string
	// Children are the top-level comments, in the order they are served.
	Children []*Node
}

// Node is a comment. A comment whose Author and Text are both empty is a
// deleted comment: it is served (with null author and text) but not counted
// in the thread's num_comments, like on HN.
type Node struct {
	// ID is the item id, unique among threads and comments.
	ID int64
	// Author is the user name; "" is written as null.
	Author string
	// Text is the comment in HN's HTML; "" is written as null.
	Text string
	// CreatedAt is when the comment was posted; the zero time means the
	// thread's CreatedAt when the thread is put into a Dataset.
	CreatedAt time.Time
	// Children are the replies, in the order they are served.
	Children []*Node
}

// Dataset is a mutable set of threads, safe for concurrent use. A Server
// serves it as it is at each request, so a change made between two requests
// is visible to the second.
//
// Callbacks (the function given to Edit) run with the Dataset locked and
// must not call back into it.
type Dataset struct {
	mu    sync.RWMutex
	now   func() time.Time
	byID  map[int64]*entry
	order []*entry // by created_at_i descending, then id descending
	// comments maps a comment id to the id of its thread. It is built on the
	// first lookup of an id that is not a thread, then kept up to date.
	comments map[int64]int64
	maxID    int64
	items    int
	hidden   int            // hidden entries
	types    map[string]int // entries per type
}

// entry is a stored thread. Its thread and raw bytes are never changed once
// stored (a change stores a new entry), so a reader can use them after
// releasing the lock; hidden is only read and written under the lock.
type entry struct {
	t      *Thread
	raw    []byte // the original items body from LoadDir; nil once changed
	hidden bool
	sec    int64 // t.CreatedAt.Unix(), the listing order's key
	live   int   // comments that are not deleted: num_comments
	nodes  int   // comments, deleted ones included
	size   int   // about the length of the items body
}

// NewDataset returns an empty Dataset whose clock is time.Now.
func NewDataset() *Dataset {
	return &Dataset{now: time.Now, byID: make(map[int64]*entry), types: make(map[string]int)}
}

// SetClock replaces the clock used for the defaults of Put and the updated_at
// bumps of Put and Edit. It is meant for tests that need exact times.
func (d *Dataset) SetClock(now func() time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.now = now
}

// Put adds t, or replaces the thread with t's ID (which is then listed again
// if it was hidden). The Dataset keeps a copy of t.
//
// A new thread without UpdatedAt gets the newest created_at in its tree. A
// replacement whose UpdatedAt is zero or equal to the replaced thread's gets
// a bumped one, max(old+1s, now) in whole seconds, so that clients comparing
// updated_at see the change.
//
// Put panics if t is nil, its ID is not positive, or its comments are not a
// tree (a node reached twice).
func (d *Dataset) Put(t *Thread) {
	if t == nil {
		panic("hnfake: Put of a nil thread")
	}
	if t.ID <= 0 {
		panic(fmt.Sprintf("hnfake: Put of a thread with id %d; ids must be positive", t.ID))
	}
	c := copyThread(t, true)
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.byID[c.ID]
	if old != nil && (c.UpdatedAt.IsZero() || c.UpdatedAt.Equal(old.t.UpdatedAt)) {
		c.UpdatedAt = bump(old.t.UpdatedAt, d.now())
	}
	d.storeLocked(c, nil, false)
}

// Delete removes the thread with this id: it leaves the listing and items/{id}
// answers 404, for the thread and its comments. It reports whether the thread
// existed.
func (d *Dataset) Delete(id int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.byID[id]
	if e == nil {
		return false
	}
	d.removeLocked(e)
	return true
}

// Hide removes the thread with this id from the listing only: items/{id}
// still serves it, as when Algolia's index lags behind HN. Edit keeps a
// hidden thread hidden; Put lists it again. Hide reports whether the thread
// exists.
func (d *Dataset) Hide(id int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.byID[id]
	if e == nil {
		return false
	}
	if !e.hidden {
		e.hidden = true
		d.hidden++
	}
	return true
}

// Edit calls fn with a copy of the thread with this id and stores what fn
// leaves in it. Unless fn changed UpdatedAt, it becomes max(old+1s, now) in
// whole seconds. fn must not keep t, change t.ID (the change is ignored) or
// call the Dataset. Edit reports whether the thread exists; fn is not called
// if it does not. It panics if fn leaves comments that are not a tree.
func (d *Dataset) Edit(id int64, fn func(t *Thread)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.byID[id]
	if e == nil {
		return false
	}
	c := copyThread(e.t, false)
	fn(c)
	c.ID = id
	if c.UpdatedAt.Equal(e.t.UpdatedAt) {
		c.UpdatedAt = bump(e.t.UpdatedAt, d.now())
	}
	// fn may have added nodes the copy does not own: copy again, checking.
	c = copyThread(c, true)
	d.storeLocked(c, nil, e.hidden)
	return true
}

// Get returns a copy of the thread with this id, hidden or not.
func (d *Dataset) Get(id int64) (*Thread, bool) {
	d.mu.RLock()
	e := d.byID[id]
	d.mu.RUnlock()
	if e == nil {
		return nil, false
	}
	return copyThread(e.t, false), true
}

// Threads returns copies of every thread, hidden ones included, newest first
// (by created_at_i, then by id, both descending: the listing's order).
func (d *Dataset) Threads() []*Thread {
	d.mu.RLock()
	es := slices.Clone(d.order)
	d.mu.RUnlock()
	out := make([]*Thread, len(es))
	for i, e := range es {
		out[i] = copyThread(e.t, false)
	}
	return out
}

// Len returns the number of threads, hidden ones included.
func (d *Dataset) Len() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.byID)
}

// NumItems returns the number of items: threads plus their comments.
func (d *Dataset) NumItems() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.items
}

// AddDeepThread puts a thread with this id whose comments form one chain
// depth deep: each comment is the only reply to the one before. The comments
// get ids above every id in the Dataset and are one second apart, starting
// one second after the thread, which is created now. It is meant for tests of
// clients that must not recurse (a depth of 20,000 is fine).
func (d *Dataset) AddDeepThread(id int64, depth int) {
	if id <= 0 {
		panic(fmt.Sprintf("hnfake: AddDeepThread with id %d; ids must be positive", id))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	created := d.now().UTC().Truncate(time.Second)
	t := &Thread{
		ID:        id,
		Type:      "story",
		Title:     "A thread nested " + strconv.Itoa(depth) + " deep",
		URL:       "https://example.com/deep/" + strconv.FormatInt(id, 10),
		Author:    "deepthinker",
		CreatedAt: created,
		Points:    1,
	}
	next := max(d.maxID, id) + 1
	kids := &t.Children
	for i := range depth {
		n := &Node{
			ID:        next + int64(i),
			Author:    "replier",
			Text:      "Reply at depth " + strconv.Itoa(i+1) + ", and I don&#x27;t stop.",
			CreatedAt: created.Add(time.Duration(i+1) * time.Second),
		}
		*kids = []*Node{n}
		kids = &n.Children
	}
	if old := d.byID[id]; old != nil {
		t.UpdatedAt = bump(old.t.UpdatedAt, d.now())
	}
	d.storeLocked(t, nil, false)
}

// storeLocked stores t (which the Dataset now owns) in place of any thread
// with its id, filling in defaults.
func (d *Dataset) storeLocked(t *Thread, raw []byte, hidden bool) {
	now := d.now()
	if t.Type == "" {
		t.Type = "story"
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now.UTC().Truncate(time.Second)
	}
	st := walkThread(t)
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = st.newest
	}
	if old := d.byID[t.ID]; old != nil {
		d.removeLocked(old)
	}
	e := &entry{t: t, raw: raw, hidden: hidden, sec: t.CreatedAt.Unix(), live: st.live, nodes: st.nodes,
		size: 300 + len(t.Title) + len(t.URL) + len(t.Text) + st.textBytes + 240*st.nodes}
	d.byID[t.ID] = e
	i := d.searchOrder(e.sec, t.ID)
	d.order = slices.Insert(d.order, i, e)
	d.maxID = max(d.maxID, st.maxID)
	d.items += 1 + st.nodes
	d.types[t.Type]++
	if hidden {
		d.hidden++
	}
	if d.comments != nil {
		eachNode(t.Children, func(n *Node) { d.comments[n.ID] = t.ID })
	}
}

func (d *Dataset) removeLocked(e *entry) {
	delete(d.byID, e.t.ID)
	i := d.searchOrder(e.sec, e.t.ID)
	if i < len(d.order) && d.order[i] == e {
		d.order = slices.Delete(d.order, i, i+1)
	}
	d.items -= 1 + e.nodes
	if d.types[e.t.Type]--; d.types[e.t.Type] == 0 {
		delete(d.types, e.t.Type)
	}
	if e.hidden {
		d.hidden--
	}
	if d.comments != nil {
		eachNode(e.t.Children, func(n *Node) {
			if d.comments[n.ID] == e.t.ID {
				delete(d.comments, n.ID)
			}
		})
	}
}

// searchOrder returns the index in d.order of the first entry that sorts at
// or after (sec, id).
func (d *Dataset) searchOrder(sec, id int64) int {
	return sort.Search(len(d.order), func(i int) bool {
		e := d.order[i]
		return e.sec < sec || (e.sec == sec && e.t.ID <= id)
	})
}

// lookup finds what items/{id} serves: a thread (node nil) or a comment of
// one, with the comment's parent id.
func (d *Dataset) lookup(id int64) (e *entry, n *Node, parent int64, ok bool) {
	d.mu.RLock()
	if e := d.byID[id]; e != nil {
		d.mu.RUnlock()
		return e, nil, 0, true
	}
	idx := d.comments
	d.mu.RUnlock()
	if idx == nil {
		d.mu.Lock()
		if d.comments == nil {
			d.comments = make(map[int64]int64)
			for _, e := range d.order {
				eachNode(e.t.Children, func(n *Node) { d.comments[n.ID] = e.t.ID })
			}
		}
		d.mu.Unlock()
	}
	d.mu.RLock()
	tid, found := d.comments[id]
	e = d.byID[tid]
	d.mu.RUnlock()
	if !found || e == nil {
		return nil, nil, 0, false
	}
	// The thread is immutable: search it without the lock.
	type item struct {
		n      *Node
		parent int64
	}
	stack := make([]item, 0, len(e.t.Children))
	for _, c := range e.t.Children {
		stack = append(stack, item{c, e.t.ID})
	}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.n.ID == id {
			return e, it.n, it.parent, true
		}
		for _, c := range it.n.Children {
			stack = append(stack, item{c, it.n.ID})
		}
	}
	return nil, nil, 0, false
}

// bump returns the updated_at a change gets: a whole second after old at
// least, now if that is later.
func bump(old, now time.Time) time.Time {
	next := old.UTC().Truncate(time.Second).Add(time.Second)
	now = now.UTC().Truncate(time.Second)
	if now.After(next) {
		return now
	}
	return next
}

type treeStats struct {
	nodes, live int
	textBytes   int // of the comments' authors and texts
	maxID       int64
	newest      time.Time
}

// walkThread fills in the comments' default times and counts the tree.
func walkThread(t *Thread) treeStats {
	st := treeStats{maxID: t.ID, newest: t.CreatedAt}
	eachNode(t.Children, func(n *Node) {
		if n.CreatedAt.IsZero() {
			n.CreatedAt = t.CreatedAt
		}
		st.nodes++
		st.textBytes += len(n.Author) + len(n.Text)
		if n.Author != "" || n.Text != "" {
			st.live++
		}
		st.maxID = max(st.maxID, n.ID)
		if n.CreatedAt.After(st.newest) {
			st.newest = n.CreatedAt
		}
	})
	st.newest = st.newest.UTC().Truncate(time.Second)
	return st
}

// eachNode calls fn for every node under kids, parents before children,
// without recursion.
func eachNode(kids []*Node, fn func(*Node)) {
	stack := slices.Clone(kids)
	slices.Reverse(stack)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		fn(n)
		for i := len(n.Children) - 1; i >= 0; i-- {
			stack = append(stack, n.Children[i])
		}
	}
}

// copyThread deep-copies t without recursion. With check, it panics when a
// node is reached twice (a cycle or a shared subtree), which would make the
// copy endless or the tree ambiguous.
func copyThread(t *Thread, check bool) *Thread {
	c := *t
	c.Tags = slices.Clone(t.Tags)
	c.Children = copyNodes(t.Children, check)
	return &c
}

func copyNodes(src []*Node, check bool) []*Node {
	if src == nil {
		return nil
	}
	var seen map[*Node]bool
	if check {
		seen = make(map[*Node]bool)
	}
	type pair struct {
		src []*Node
		dst []*Node
	}
	root := make([]*Node, len(src))
	stack := []pair{{src, root}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for i, n := range p.src {
			if n == nil {
				panic("hnfake: a nil comment node")
			}
			if check {
				if seen[n] {
					panic(fmt.Sprintf("hnfake: comment %d is reached twice; comments must form a tree", n.ID))
				}
				seen[n] = true
			}
			c := *n
			if n.Children != nil {
				c.Children = make([]*Node, len(n.Children))
				stack = append(stack, pair{n.Children, c.Children})
			}
			p.dst[i] = &c
		}
	}
	return root
}
