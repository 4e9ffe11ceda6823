package tidemarktest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

// Tree is an in-memory tree of directories and leaves, standing in for a
// file system or a database of schemas, whose containers source rows
// declare (see tidemark.Nest). It is as strict as a real one: a node is
// made only in a directory that exists, and a directory is removed only
// once it holds no nodes and no tags (its attachments). So a write out of
// order fails. It logs every change and is safe for concurrent use; like
// DB it outlives the engines that write to it.
type Tree struct {
	mu    sync.Mutex
	nodes map[string]*treeNode // by path, segments joined by "/"
	log   []string
	fail  map[string]error
	// failIn counts the node and tag actions still allowed before every
	// apply fails with failErr; negative when no failure is set.
	failIn  int
	failErr error

	rootSink *target.ContainerSinkFunc[treeRoot]
	nodeSink *target.SinkFunc[treeAction]
	tagSink  *target.SinkFunc[tagAction]
}

type treeNode struct {
	Node
	tags map[string]string
}

// Node is a state of a Tree: a directory when Dir is set, else a leaf that
// holds Text. A directory declared with another Epoch is made again, empty:
// a destructive change for what is in it.
type Node struct {
	Dir   bool
	Text  string
	Epoch int
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	t := &Tree{nodes: make(map[string]*treeNode), failIn: -1}
	t.rootSink = target.NewContainerSink(t.applyRoots)
	t.nodeSink = target.NewSink(t.applyNodes)
	t.tagSink = target.NewSink(t.applyTags)
	return t
}

// TreeRoot declares the top-level directory name of tr as a target of f.
// Rows declare nodes in it; a directory node is a container, whose nodes
// and "tag" attachments rows declare with tidemark.Nest and tidemark.Attach.
func TreeRoot(f *tidemark.Flow, tr *Tree, name string) *tidemark.Target[Node] {
	return tidemark.DeclareContainer[string, Node](f, "memory.tree", target.Key("tree/"+name), &rootHandler{tree: tr}, name)
}

// rootHandler reconciles top-level directories; its record is the name.
type rootHandler struct{ tree *Tree }

type treeRoot struct {
	name string
	drop bool
}

func (h *rootHandler) Reconcile(_ target.Key, desired *string, prev []target.Record, _ bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.DoContainer(h.tree.rootSink, treeRoot{name: string(prev[0]), drop: true})}, nil
	}
	if err := checkSegment(*desired); err != nil {
		return nil, err
	}
	return &target.Reconciled{Action: target.DoContainer(h.tree.rootSink, treeRoot{name: *desired}), Record: target.Record(*desired)}, nil
}

func (tr *Tree) applyRoots(_ context.Context, actions []treeRoot) ([]target.Erased, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]target.Erased, len(actions))
	for i, a := range actions {
		if a.drop {
			for p := range tr.nodes {
				if p == a.name || strings.HasPrefix(p, a.name+"/") {
					delete(tr.nodes, p)
				}
			}
			tr.log = append(tr.log, "rmdir -r "+a.name)
			continue
		}
		if tr.nodes[a.name] == nil {
			tr.nodes[a.name] = &treeNode{Node: Node{Dir: true}}
			tr.log = append(tr.log, "mkdir "+a.name)
		}
		out[i] = target.Erase[Node](&nodeHandler{tree: tr, dir: a.name})
	}
	return out, nil
}

// nodeHandler reconciles the nodes of one directory; its record is the
// node's path and value, as JSON.
type nodeHandler struct {
	tree *Tree
	dir  string
}

type nodeRecord struct {
	Path string
	Node
}

type treeAction struct {
	path string
	node *Node // nil: remove
	// remake says a directory is made again, empty.
	remake bool
}

func checkSegment(s string) error {
	if s == "" || strings.Contains(s, "/") {
		return fmt.Errorf("memory tree: %q is not a node name", s)
	}
	return nil
}

func (h *nodeHandler) Reconcile(key target.Key, desired *Node, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if err := checkSegment(string(key)); err != nil {
		return nil, err
	}
	path := h.dir + "/" + string(key)
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.tree.nodeSink, treeAction{path: path})}, nil
	}
	rec, err := json.Marshal(nodeRecord{Path: path, Node: *desired})
	if err != nil {
		return nil, err
	}
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	action := treeAction{path: path, node: desired}
	inv := target.InvalidateNone
	for _, p := range prev {
		var old nodeRecord
		if err := json.Unmarshal(p, &old); err != nil {
			return nil, fmt.Errorf("memory tree: decoding a record: %w", err)
		}
		if desired.Dir && old.Dir && old.Epoch != desired.Epoch {
			action.remake, inv = true, target.InvalidateDestructive
		}
	}
	return &target.Reconciled{Action: target.Do(h.tree.nodeSink, action), Record: rec, Invalidate: inv}, nil
}

// Children implements target.Nester: a directory's nodes are reconciled by
// a nodeHandler of its path.
func (h *nodeHandler) Children(key target.Key, desired any, rec target.Record) (target.Erased, error) {
	path := h.dir + "/" + string(key)
	switch d := desired.(type) {
	case *Node:
		if !d.Dir {
			return target.Erased{}, nil
		}
	case Node:
		if !d.Dir {
			return target.Erased{}, nil
		}
	case nil:
		var old nodeRecord
		if err := json.Unmarshal(rec, &old); err != nil {
			return target.Erased{}, fmt.Errorf("memory tree: decoding a record: %w", err)
		}
		if !old.Dir {
			return target.Erased{}, nil
		}
		path = old.Path
	default:
		return target.Erased{}, fmt.Errorf("memory tree: a node is a Node, got %T", desired)
	}
	return target.Erase[Node](&nodeHandler{tree: h.tree, dir: path}), nil
}

// Attachment implements target.Attacher: a directory has "tag"
// attachments, each holding a string.
func (h *nodeHandler) Attachment(kind string) (target.Erased, bool) {
	if kind != "tag" {
		return target.Erased{}, false
	}
	return target.Erase[string](&tagHandler{tree: h.tree, dir: h.dir}), true
}

func (tr *Tree) applyNodes(_ context.Context, actions []treeAction) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, a := range actions {
		if err := tr.fail[a.path]; err != nil {
			return err
		}
	}
	for _, a := range actions {
		if err := tr.allow(); err != nil {
			return err
		}
		if err := tr.applyNode(a); err != nil {
			return err
		}
	}
	return nil
}

// allow counts an action against FailAfter; the caller holds tr.mu.
func (tr *Tree) allow() error {
	if tr.failIn == 0 {
		return tr.failErr
	}
	if tr.failIn > 0 {
		tr.failIn--
	}
	return nil
}

// applyNode applies one action; the caller holds tr.mu.
func (tr *Tree) applyNode(a treeAction) error {
	cur := tr.nodes[a.path]
	if a.node == nil {
		switch {
		case cur == nil:
			return nil
		case cur.Dir && (tr.hasChildren(a.path) || len(cur.tags) > 0):
			return fmt.Errorf("memory tree: rmdir %s: the directory is not empty", a.path)
		}
		delete(tr.nodes, a.path)
		if cur.Dir {
			tr.log = append(tr.log, "rmdir "+a.path)
		} else {
			tr.log = append(tr.log, "rm "+a.path)
		}
		return nil
	}
	parent := a.path[:strings.LastIndex(a.path, "/")]
	if p := tr.nodes[parent]; p == nil || !p.Dir {
		return fmt.Errorf("memory tree: %s: no such directory %s", a.path, parent)
	}
	switch {
	case a.node.Dir && cur != nil && cur.Dir && !a.remake:
		cur.Node = *a.node
		tr.log = append(tr.log, "chdir "+a.path)
	case a.node.Dir:
		for p := range tr.nodes {
			if strings.HasPrefix(p, a.path+"/") {
				delete(tr.nodes, p)
			}
		}
		tr.nodes[a.path] = &treeNode{Node: *a.node}
		tr.log = append(tr.log, "mkdir "+a.path)
	case cur != nil && cur.Dir && (tr.hasChildren(a.path) || len(cur.tags) > 0):
		return fmt.Errorf("memory tree: write %s: it is a directory that is not empty", a.path)
	default:
		tr.nodes[a.path] = &treeNode{Node: *a.node}
		tr.log = append(tr.log, "write "+a.path)
	}
	return nil
}

// hasChildren reports whether a directory holds nodes; the caller holds
// tr.mu.
func (tr *Tree) hasChildren(path string) bool {
	for p := range tr.nodes {
		if strings.HasPrefix(p, path+"/") {
			return true
		}
	}
	return false
}

// tagHandler reconciles the tags of one directory; its record is the
// tag's value.
type tagHandler struct {
	tree *Tree
	dir  string
}

type tagAction struct {
	dir, name string
	value     *string // nil: remove
}

func (h *tagHandler) Reconcile(key target.Key, desired *string, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.tree.tagSink, tagAction{dir: h.dir, name: string(key)})}, nil
	}
	rec := target.Record(*desired)
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &target.Reconciled{Action: target.Do(h.tree.tagSink, tagAction{dir: h.dir, name: string(key), value: desired}), Record: rec}, nil
}

func (tr *Tree) applyTags(_ context.Context, actions []tagAction) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, a := range actions {
		if err := tr.fail[a.dir+"#"+a.name]; err != nil {
			return err
		}
	}
	for _, a := range actions {
		if err := tr.allow(); err != nil {
			return err
		}
		d := tr.nodes[a.dir]
		if a.value == nil {
			if d != nil {
				delete(d.tags, a.name)
				tr.log = append(tr.log, "untag "+a.dir+" "+a.name)
			}
			continue
		}
		if d == nil || !d.Dir {
			return fmt.Errorf("memory tree: tag %s: no such directory", a.dir)
		}
		if d.tags == nil {
			d.tags = make(map[string]string)
		}
		d.tags[a.name] = *a.value
		tr.log = append(tr.log, "tag "+a.dir+" "+a.name)
	}
	return nil
}

// FailPath makes every write of the node at path (segments joined by "/",
// from the top-level directory) fail with err, as a file system refusing
// it; path#name names a tag. Heal ends it.
func (tr *Tree) FailPath(path string, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.fail == nil {
		tr.fail = make(map[string]error)
	}
	tr.fail[path] = err
}

// FailAfter lets the next n node and tag actions succeed, then fails
// every apply with err, as a file system that went away mid-batch; Heal
// ends it.
func (tr *Tree) FailAfter(n int, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.failIn, tr.failErr = n, err
}

// Heal ends the failures set by FailPath and FailAfter.
func (tr *Tree) Heal() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.fail, tr.failIn, tr.failErr = nil, -1, nil
}

// Snapshot returns every node by path: "dir" for a directory (with its
// tags as " #name=value", sorted), else the leaf's text.
func (tr *Tree) Snapshot() map[string]string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string]string, len(tr.nodes))
	for p, n := range tr.nodes {
		if !n.Dir {
			out[p] = n.Text
			continue
		}
		s := "dir"
		for _, name := range slices.Sorted(maps.Keys(n.tags)) {
			s += " #" + name + "=" + n.tags[name]
		}
		out[p] = s
	}
	return out
}

// Log returns the changes made since the last ResetLog, in order: "mkdir
// p", "chdir p", "write p", "rm p", "rmdir p", "tag p name", "untag p
// name", "rmdir -r p".
func (tr *Tree) Log() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.log)
}

// ResetLog empties the log.
func (tr *Tree) ResetLog() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.log = nil
}
