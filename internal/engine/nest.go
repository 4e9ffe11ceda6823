package engine

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// Containers declared by rows.
//
// A processing function may declare a container (a directory per source
// row, a table per tenant) as a state of a root whose child handler is a
// target.Nester, then declare children in it, and containers in those, to
// any depth. Every such state is tracked in its root's section of the
// declaring row, under a nested key that holds the path of containers it is
// in; so ownership, moves, staging and the crash story are those of any
// other state. Only a row that declares a container can declare in it, so
// a container no row declares has no declared children either: the rows
// that stopped declaring it deleted theirs in the same commit.
//
// The writer orders a batch's actions in phases (see phase): containers
// are created, outermost first, before their attachments and children are
// written; children are deleted before attachments, and those before their
// containers, innermost first. A flow without row containers has every
// action in one phase, as before.

// nestedPrefix starts every nested key; keys a row declares directly in a
// root whose states may be containers may not start with it (elsewhere no
// key is nested, and any key may).
const nestedPrefix = "\x00"

const (
	nestedChild  = 'c'
	nestedAttach = 'a'
)

// nestedKey encodes the key of a state declared in a row container: path
// holds the keys of the containers it is in, from the root's child down;
// attach is the kind of an attachment, empty for a child. With an empty
// path and no attachment it is key itself.
func nestedKey(path []target.Key, attach string, key target.Key) target.Key {
	if len(path) == 0 && attach == "" {
		return key
	}
	var b []byte
	b = append(b, nestedPrefix...)
	if attach == "" {
		b = append(b, nestedChild)
	} else {
		b = append(b, nestedAttach)
	}
	seg := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, p := range path {
		seg(string(p))
	}
	if attach != "" {
		seg(attach)
	}
	seg(string(key))
	return target.Key(b)
}

// nested is a decoded key: see nestedKey.
type nested struct {
	path   []target.Key
	attach string
	key    target.Key
}

// depth is how many containers the state is in, below its root.
func (n nested) depth() int { return len(n.path) }

// container returns the nested key of the container the state is in.
func (n nested) container() target.Key {
	return nestedKey(n.path[:len(n.path)-1], "", n.path[len(n.path)-1])
}

// enclosing returns the nested keys of the row containers the state k is
// in, outermost first; none for a key that is not nested.
func enclosing(k target.Key) []target.Key {
	if !strings.HasPrefix(string(k), nestedPrefix) {
		return nil
	}
	n, err := splitKey(k)
	if err != nil {
		return nil
	}
	out := make([]target.Key, len(n.path))
	for i := range n.path {
		out[i] = nestedKey(n.path[:i], "", n.path[i])
	}
	return out
}

// splitKey decodes a key of a root's section. A key that is not nested
// comes back as it is, with an empty path.
func splitKey(k target.Key) (nested, error) {
	s := string(k)
	if !strings.HasPrefix(s, nestedPrefix) {
		return nested{key: k}, nil
	}
	if len(s) < 2 || s[1] != nestedChild && s[1] != nestedAttach {
		return nested{}, fmt.Errorf("engine: bad nested key %q", k)
	}
	attach := s[1] == nestedAttach
	b := []byte(s[2:])
	var segs []string
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nested{}, fmt.Errorf("engine: bad nested key %q", k)
		}
		segs = append(segs, string(b[w:w+int(n)]))
		b = b[w+int(n):]
	}
	need := 2
	if attach {
		need = 3
	}
	if len(segs) < need {
		return nested{}, fmt.Errorf("engine: bad nested key %q", k)
	}
	out := nested{key: target.Key(segs[len(segs)-1])}
	segs = segs[:len(segs)-1]
	if attach {
		out.attach = segs[len(segs)-1]
		segs = segs[:len(segs)-1]
	}
	for _, p := range segs {
		out.path = append(out.path, target.Key(p))
	}
	return out, nil
}

// phase orders the actions of a batch; see the comment at the top.
type phase struct {
	class phaseClass
	depth int
}

type phaseClass uint8

const (
	createContainer phaseClass = iota
	writeAttachment
	writeChild
	deleteAttachment
	deleteContainer
)

// phaseOf returns the phase of an action on a state at depth: a container
// (its handler gave a child handler), an attachment, or a child.
func phaseOf(container, attachment, deletion bool, depth int) phase {
	switch {
	case container && deletion:
		return phase{deleteContainer, depth}
	case container:
		return phase{createContainer, depth}
	case attachment && deletion:
		return phase{deleteAttachment, depth}
	case attachment:
		return phase{writeAttachment, depth}
	default:
		return phase{writeChild, 0}
	}
}

// comparePhases orders phases: containers created outermost first, then
// attachments, children, attachments deleted, containers deleted innermost
// first.
func comparePhases(a, b phase) int {
	if c := cmp.Compare(a.class, b.class); c != 0 {
		return c
	}
	if a.class == deleteContainer {
		return cmp.Compare(b.depth, a.depth)
	}
	return cmp.Compare(a.depth, b.depth)
}

// nest is a row container as a row's reconcile knows it: the handler of
// its children and what became of it, which its children inherit.
type nest struct {
	children target.Erased
	parent   *nest
	// invalidate is what the container's change does to its children;
	// mayBeMissing says the container may not exist (so its children may
	// not either).
	invalidate   target.Invalidation
	mayBeMissing bool
}

// fate applies what became of the containers a state is in to what the
// row's tracking says may exist of it. destroyed says a container was
// created again empty: the state is gone with it.
func (n *nest) fate(prev []target.Record, mayBeMissing bool) (_ []target.Record, _ bool, destroyed bool) {
	for c := n; c != nil; c = c.parent {
		switch {
		case c.invalidate == target.InvalidateDestructive:
			return nil, true, true
		case c.invalidate == target.InvalidateLossy || c.mayBeMissing:
			mayBeMissing = true
		}
	}
	return prev, mayBeMissing, false
}

// scope finds the handlers of a row's states in row containers: from the
// containers the row declares now, and for those it no longer declares from
// the records in its tracking.
type scope struct {
	u        *update
	tracking map[trackKey]*tracked
	nests    map[trackKey]*nest
}

// handler returns the handler of the state k and the container it is in
// (nil for a child of a root), with k decoded. Keys are nested only in a
// root whose states may be containers: elsewhere a key starting with a NUL
// byte is a key like any other.
func (s *scope) handler(k trackKey) (target.Erased, *nest, nested, error) {
	rs := s.u.setup.byID[k.root]
	if !rs.child.Nests() {
		return rs.child, nil, nested{key: k.key}, nil
	}
	n, err := splitKey(k.key)
	if err != nil {
		return target.Erased{}, nil, n, err
	}
	if n.depth() == 0 {
		return rs.child, nil, n, nil
	}
	in, err := s.container(trackKey{k.root, n.container()})
	if err != nil {
		return target.Erased{}, nil, n, err
	}
	if n.attach == "" {
		return in.children, in, n, nil
	}
	h, ok := in.children.Attachment(n.attach)
	if !ok {
		return target.Erased{}, nil, n, fmt.Errorf("container %q has no attachment of kind %q", n.path[len(n.path)-1], n.attach)
	}
	return h, in, n, nil
}

// container returns the row container k, declared now or tracked.
func (s *scope) container(k trackKey) (*nest, error) {
	if c := s.nests[k]; c != nil {
		return c, nil
	}
	t := s.tracking[k]
	if t == nil || len(t.prev) == 0 {
		return nil, fmt.Errorf("the row's tracking holds states in container %q but no record of the container", displayKey(k.key))
	}
	h, in, n, err := s.handler(k)
	if err != nil {
		return nil, err
	}
	children, err := trackedChildren(h, n.key, t.prev)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", displayKey(k.key), err)
	}
	if children.IsZero() {
		return nil, fmt.Errorf("the row's tracking holds states in %q, which is not a container", displayKey(k.key))
	}
	c := &nest{children: children, parent: in, mayBeMissing: t.mayBeMissing}
	s.nests[k] = c
	return c, nil
}

// trackedChildren returns the handler of the children of a state no longer
// declared, from the first of the records it may be in that is a
// container's: a state that became a container in an update cut short is
// one in its staged record only.
func trackedChildren(h target.Erased, key target.Key, prev []target.Record) (target.Erased, error) {
	if !h.Nests() {
		return target.Erased{}, nil
	}
	for _, rec := range prev {
		children, err := safeChildren(h, key, nil, rec)
		if err != nil || !children.IsZero() {
			return children, err
		}
	}
	return target.Erased{}, nil
}

// safeChildren calls a Nester, turning a panic into an error.
func safeChildren(h target.Erased, key target.Key, desired any, rec target.Record) (ch target.Erased, err error) {
	if !h.Nests() {
		return target.Erased{}, nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in Children: %v", p)
		}
	}()
	return h.Children(key, desired, rec)
}

// displayKey shows a key, nested ones as a path.
func displayKey(k target.Key) string {
	n, err := splitKey(k)
	if err != nil || n.depth() == 0 {
		return string(k)
	}
	parts := make([]string, 0, len(n.path)+1)
	for _, p := range n.path {
		parts = append(parts, string(p))
	}
	if n.attach != "" {
		parts = append(parts, n.attach+":"+string(n.key))
	} else {
		parts = append(parts, string(n.key))
	}
	return strings.Join(parts, "/")
}

// spread carries a write of a row container that destroys what is in it,
// or may lose it, to the states other rows declare in it: those rows did
// not see the change when they were processed. Rows of the batch reconcile
// their states in it again, as destroyed or possibly missing; rows outside
// the batch that own the container are marked (staged, before the write is
// applied, so a crash keeps the marks) to write theirs again.
func (ow *owners) spread(ctx context.Context, batch []*rowResult) error {
	ow.carry(batch)
	hit := make(map[trackKey]target.Invalidation)
	writers := make(map[trackKey]map[*rowResult]bool)
	for _, res := range batch {
		if res.kind != resultUpdate {
			continue
		}
		for _, a := range res.actions {
			if a.delete || a.phase.class != createContainer || a.invalidate == target.InvalidateNone {
				continue
			}
			k := trackKey{a.root.id, a.key}
			hit[k] = max(hit[k], a.invalidate)
			if writers[k] == nil {
				writers[k] = make(map[*rowResult]bool)
			}
			writers[k][res] = true
		}
	}
	if len(hit) == 0 {
		return nil
	}
	inBatch := make(map[int64]bool)
	for _, res := range batch {
		if res.id != 0 {
			inBatch[res.id] = true
		}
		if res.kind != resultUpdate {
			continue
		}
		changed := make(map[*nest]bool)
		for k, inv := range hit {
			d := res.declaredSet[k]
			if d == nil || d.nest == nil || writers[k][res] && d.nest.invalidate >= inv {
				continue
			}
			d.nest.invalidate = max(d.nest.invalidate, inv)
			changed[d.nest] = true
		}
		if len(changed) > 0 {
			ow.settleIn(res, changed, nil)
		}
	}
	if ow.u.opts.Preview {
		return nil
	}
	keys := make([]statestore.OwnerKey, 0, len(hit))
	byOwnerKey := make(map[statestore.OwnerKey]trackKey, len(hit))
	for k := range hit {
		ok := ownerKey(k)
		keys = append(keys, ok)
		byOwnerKey[ok] = k
	}
	containers, loaded, err := ow.ownedOutside(ctx, keys, byOwnerKey, inBatch)
	if err != nil {
		return err
	}
	return ow.stageMarks(ctx, loaded, func(id int64, committed []statestore.Section) []stagedEntry {
		var add []stagedEntry
		for _, s := range committed {
			for _, e := range s.Entries {
				for _, c := range containers[id] {
					if c.root == s.TargetID && within(target.Key(e.Key), c.key) {
						// May be missing now: written again next time.
						add = append(add, stagedEntry{root: s.TargetID, entry: statestore.Entry{Key: e.Key, Deleting: true}})
						break
					}
				}
			}
		}
		return add
	})
}

// carry brings to the batch's rows the containers an earlier batch of this
// update remade: a row processed before that write saw the container as it
// was, so it would remake it once more, and would keep its states in it as
// they were. A row that would write the container reconciles it again
// against the record written (no write, when it declares the same), and
// every row reconciles what it has in it as destroyed or possibly missing.
func (ow *owners) carry(batch []*rowResult) {
	if len(ow.remade) == 0 {
		return
	}
	for _, res := range batch {
		if res.kind != resultUpdate {
			continue
		}
		changed := make(map[*nest]bool)
		for k, d := range res.declaredSet {
			r, ok := ow.remade[k]
			if !ok || d.nest == nil || d.deferred || r.by.id == res.id {
				continue // the remaking row wrote what it has in it then
			}
			if d.action != nil {
				// Written already: a row declaring it as it now is need
				// not write it again. One that declares it otherwise
				// does, as for any shared state.
				ow.settle(res, k, d, []target.Record{r.record}, false)
				if res.kind == resultFailed {
					break
				}
			}
			d.nest.invalidate = max(d.nest.invalidate, r.invalidate)
			changed[d.nest] = true
		}
		if len(changed) > 0 && res.kind != resultFailed {
			ow.settleIn(res, changed, ow.rewritten)
		}
	}
}

// within reports whether the state k is in the row container c, at any
// depth.
func within(k, c target.Key) bool {
	n, err := splitKey(k)
	if err != nil || n.depth() == 0 {
		return false
	}
	cn, err := splitKey(c)
	if err != nil || cn.attach != "" {
		return false
	}
	path := append(slices.Clone(cn.path), cn.key)
	if len(n.path) < len(path) {
		return false
	}
	for i, p := range path {
		if n.path[i] != p {
			return false
		}
	}
	return true
}

// settleIn reconciles again the states res declares in the containers
// changed, and in those inside them, with what became of them.
//
// A state in written, written since what became of its containers, is
// reconciled against the record written instead.
func (ow *owners) settleIn(res *rowResult, changed map[*nest]bool, written map[trackKey]target.Record) {
	keys := make([]trackKey, 0, len(res.declaredSet))
	for k, d := range res.declaredSet {
		if d.in != nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b trackKey) int {
		return cmp.Or(cmp.Compare(res.declaredSet[a].depth, res.declaredSet[b].depth), compareTrackKeys(a, b))
	})
	for _, k := range keys {
		d := res.declaredSet[k]
		if !changed[d.in] {
			continue
		}
		if d.nest != nil {
			changed[d.nest] = true
		}
		if rec, ok := written[k]; ok {
			ow.settle(res, k, d, []target.Record{rec}, false)
		} else {
			prev, mayBeMissing, _ := d.in.fate(d.prev, d.mayBeMissing)
			ow.settle(res, k, d, prev, mayBeMissing)
		}
		if res.kind == resultFailed {
			return
		}
	}
}
