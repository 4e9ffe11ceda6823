package hackernews

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// Thread is one HackerNews thread: a story (or a job, a poll...) and every
// comment below it.
type Thread struct {
	ID    string
	Type  string // "story", "job", "poll", ... as the API says
	Title string
	URL   string // "" when none
	// Author is "" when none (a deleted item).
	Author string
	// Text is the raw HTML of the story's own text, "" when none; see
	// PlainText.
	Text string
	// CreatedAt is zero when unknown.
	CreatedAt time.Time
	// Comments holds every comment of the tree, each id once, in document
	// order: a comment comes before its replies, replies in the API's order.
	Comments []Comment
}

// Comment is one comment of a thread. A deleted or dead comment keeps its
// place, with an empty Author and Text, so that its replies keep a parent.
type Comment struct {
	ID string
	// ParentID is the id of the story or comment replied to; "" when none
	// is known.
	ParentID string
	Author   string
	// Text is raw HTML; see PlainText.
	Text      string
	CreatedAt time.Time
}

// node is one item object of the tree while it is parsed. Its fields can
// come in any order, "children" before "id" included, so nodes get their
// place in document order when their object opens and are judged when the
// whole tree is read.
type node struct {
	id       string // "" when missing or not an id
	parentID string // as the node says; "" when missing
	parent   int    // index of the enclosing node; -1 for the root
	typ      string
	title    string
	url      string
	author   string
	text     string
	created  time.Time // from created_at
	createdI int64     // from created_at_i, seconds; 0 when missing
}

// frame is one open container that the parser cares about: an item object
// or the "children" array of one. Values of other fields are skipped whole.
type frame struct {
	node     int  // index in nodes
	children bool // the frame is node's "children" array
}

// ParseItem parses the body of an items/{id} response — a story and its
// comment tree, each node with id, type, author, title, url, text,
// created_at, created_at_i, parent_id and children — into a Thread.
//
// It streams: the tree is walked with an explicit stack, without recursion
// and without a depth limit, so a thread nested tens of thousands deep
// parses. Unknown fields are skipped; null, missing or mistyped fields read
// as empty (a deleted comment has a null author and text). A comment whose
// id was met before, in document order, is dropped (the first one wins);
// so is one without an id. A node below the root is kept as a comment
// whatever its type.
//
// An empty body, or "null", means the thread is gone: exists is false and
// err nil. Malformed JSON, a truncated body, trailing data, or a root that
// is not an object with an id, give an error matching ErrMalformed; a
// failure of r itself is returned wrapped as it is. ParseItem never panics.
func ParseItem(r io.Reader) (thread Thread, exists bool, err error) {
	l := newLexer(r)
	k, err := l.next()
	if err != nil {
		return Thread{}, false, itemError(err)
	}
	switch k {
	case tokEOF, tokNull:
		if k == tokNull {
			if k, err = l.next(); err != nil {
				return Thread{}, false, itemError(err)
			}
			if k != tokEOF {
				return Thread{}, false, itemError(l.syntax("unexpected data after null"))
			}
		}
		return Thread{}, false, nil
	case tokBeginObject:
	default:
		return Thread{}, false, fmt.Errorf("%w: item is not a JSON object", ErrMalformed)
	}

	nodes := []node{{parent: -1}}
	stack := []frame{{node: 0}}
	for len(stack) > 0 {
		k, err := l.next()
		if err != nil {
			return Thread{}, false, itemError(err)
		}
		top := stack[len(stack)-1]
		if top.children {
			switch k {
			case tokEndArray:
				stack = stack[:len(stack)-1]
			case tokBeginObject:
				nodes = append(nodes, node{parent: top.node})
				stack = append(stack, frame{node: len(nodes) - 1})
			default:
				if err := l.skip(k); err != nil {
					return Thread{}, false, itemError(err)
				}
			}
			continue
		}
		if k == tokEndObject {
			stack = stack[:len(stack)-1]
			continue
		}
		// k is tokKey: the grammar allows nothing else in an object.
		n := &nodes[top.node]
		f := fieldOf(l.buf)
		k, err = l.next()
		if err != nil {
			return Thread{}, false, itemError(err)
		}
		switch f {
		case fieldChildren:
			if k == tokBeginArray {
				stack = append(stack, frame{node: top.node, children: true})
				continue
			}
		case fieldID:
			n.id = idValue(l, k)
		case fieldParentID:
			n.parentID = idValue(l, k)
		case fieldType:
			n.typ = stringValue(l, k)
		case fieldTitle:
			n.title = stringValue(l, k)
		case fieldURL:
			n.url = stringValue(l, k)
		case fieldAuthor:
			n.author = stringValue(l, k)
		case fieldText:
			n.text = stringValue(l, k)
		case fieldCreatedAt:
			if t, err := time.Parse(time.RFC3339Nano, stringValue(l, k)); err == nil {
				n.created = t.UTC()
			}
		case fieldCreatedAtI:
			if k == tokNumber {
				n.createdI, _ = strconv.ParseInt(string(l.buf), 10, 64)
			}
		}
		if err := l.skip(k); err != nil {
			return Thread{}, false, itemError(err)
		}
	}
	if k, err := l.next(); err != nil {
		return Thread{}, false, itemError(err)
	} else if k != tokEOF {
		return Thread{}, false, itemError(l.syntax("unexpected data after the item"))
	}

	root := &nodes[0]
	if root.id == "" {
		return Thread{}, false, fmt.Errorf("%w: item has no id", ErrMalformed)
	}
	return buildThread(nodes), true, nil
}

// buildThread turns the parsed nodes, root first, into a Thread, keeping
// the first comment of each id.
func buildThread(nodes []node) Thread {
	root := &nodes[0]
	t := Thread{
		ID:        root.id,
		Type:      root.typ,
		Title:     root.title,
		URL:       root.url,
		Author:    root.author,
		Text:      root.text,
		CreatedAt: root.createdAt(),
	}
	seen := make(map[string]struct{}, len(nodes))
	seen[root.id] = struct{}{}
	t.Comments = make([]Comment, 0, len(nodes)-1)
	for i := 1; i < len(nodes); i++ {
		n := &nodes[i]
		if n.id == "" {
			continue
		}
		if _, dup := seen[n.id]; dup {
			continue
		}
		seen[n.id] = struct{}{}
		parent := n.parentID
		if parent == "" {
			parent = nodes[n.parent].id
		}
		t.Comments = append(t.Comments, Comment{
			ID:        n.id,
			ParentID:  parent,
			Author:    n.author,
			Text:      n.text,
			CreatedAt: n.createdAt(),
		})
	}
	return t
}

func (n *node) createdAt() time.Time {
	if !n.created.IsZero() {
		return n.created
	}
	if n.createdI != 0 {
		return time.Unix(n.createdI, 0).UTC()
	}
	return time.Time{}
}

// field is an item field that ParseItem reads.
type field uint8

const (
	fieldOther field = iota
	fieldChildren
	fieldID
	fieldParentID
	fieldType
	fieldTitle
	fieldURL
	fieldAuthor
	fieldText
	fieldCreatedAt
	fieldCreatedAtI
)

func fieldOf(key []byte) field {
	switch string(key) {
	case "children":
		return fieldChildren
	case "id":
		return fieldID
	case "parent_id":
		return fieldParentID
	case "type":
		return fieldType
	case "title":
		return fieldTitle
	case "url":
		return fieldURL
	case "author":
		return fieldAuthor
	case "text":
		return fieldText
	case "created_at":
		return fieldCreatedAt
	case "created_at_i":
		return fieldCreatedAtI
	}
	return fieldOther
}

// stringValue returns the value of a string token, "" for any other.
func stringValue(l *lexer, k tokKind) string {
	if k != tokString {
		return ""
	}
	return l.str()
}

// idValue returns an item id given as a number or a string, in canonical
// decimal form; "" when the token is not a positive integer.
func idValue(l *lexer, k tokKind) string {
	if k != tokNumber && k != tokString {
		return ""
	}
	id, err := strconv.ParseInt(string(l.buf), 10, 64)
	if err != nil || id <= 0 {
		return ""
	}
	return strconv.FormatInt(id, 10)
}

// itemError wraps a lexer error: bad or truncated JSON as ErrMalformed, a
// reader's failure as it is.
func itemError(err error) error {
	if isReadError(err) {
		return fmt.Errorf("hackernews: reading item: %w", err)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}
