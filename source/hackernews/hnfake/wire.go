package hnfake

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The writers below produce the API's bytes directly: keys in the order the
// API sends them (sorted), no whitespace, and no recursion over comment
// trees, which may be nested tens of thousands deep.

const (
	itemTimeLayout = "2006-01-02T15:04:05.000Z" // created_at in items
	hitTimeLayout  = "2006-01-02T15:04:05Z"     // created_at, updated_at in hits
	hexDigits      = "0123456789abcdef"
)

// appendString appends s as a JSON string the way the recorded API bodies
// escape it: '"' and '\\' with a backslash; \b \f \n \r \t by name; other
// control characters, DEL and every non-ASCII character as \u escapes
// (lowercase hex, UTF-16 surrogate pairs above U+FFFF); '<', '>', '&' and '/'
// as they are. Invalid UTF-8 becomes \ufffd, as encoding/json would decode
// it. Any JSON decoder reads back the same string encoding/json would.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = appendU(b, rune(c))
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = appendU(appendU(b, r1), r2)
		} else {
			b = appendU(b, r) // utf8.RuneError for an invalid byte
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendNullable appends s as a string, or null when it is empty.
func appendNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

func appendTime(b []byte, t time.Time, layout string) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, layout)
	return append(b, '"')
}

// appendThreadItem appends the items/{id} body of a whole thread.
func appendThreadItem(b []byte, t *Thread) []byte {
	b = append(b, `{"author":`...)
	b = appendNullable(b, t.Author)
	b = append(b, `,"children":`...)
	b = appendTree(b, t.Children, t.ID, t.ID)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, t.CreatedAt, itemTimeLayout)
	b = append(b, `,"created_at_i":`...)
	b = strconv.AppendInt(b, t.CreatedAt.Unix(), 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"options":[],"parent_id":null,"points":`...)
	b = strconv.AppendInt(b, int64(t.Points), 10)
	b = append(b, `,"story_id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"text":`...)
	b = appendNullable(b, t.Text)
	b = append(b, `,"title":`...)
	b = appendString(b, t.Title)
	b = append(b, `,"type":`...)
	b = appendString(b, t.Type)
	b = append(b, `,"url":`...)
	b = appendNullable(b, t.URL)
	return append(b, '}')
}

// appendCommentItem appends the items/{id} body of a comment and its replies.
func appendCommentItem(b []byte, n *Node, parentID, storyID int64) []byte {
	b = appendCommentHead(b, n)
	b = appendTree(b, n.Children, n.ID, storyID)
	return appendCommentTail(b, n, parentID, storyID)
}

// appendTree appends the JSON array of the comments kids, whose parent is
// ownerID, with all their replies, using an explicit stack.
func appendTree(b []byte, kids []*Node, ownerID, storyID int64) []byte {
	type frame struct {
		kids     []*Node
		next     int
		node     *Node // nil for the outermost array
		parentID int64 // node's parent
	}
	b = append(b, '[')
	stack := []frame{{kids: kids}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next < len(top.kids) {
			n := top.kids[top.next]
			if top.next > 0 {
				b = append(b, ',')
			}
			top.next++
			parent := ownerID
			if top.node != nil {
				parent = top.node.ID
			}
			b = appendCommentHead(b, n)
			b = append(b, '[')
			stack = append(stack, frame{kids: n.Children, node: n, parentID: parent})
			continue
		}
		f := *top
		stack = stack[:len(stack)-1]
		b = append(b, ']')
		if f.node != nil {
			b = appendCommentTail(b, f.node, f.parentID, storyID)
		}
	}
	return b
}

// appendCommentHead appends a comment up to its children array, exclusive.
func appendCommentHead(b []byte, n *Node) []byte {
	b = append(b, `{"author":`...)
	b = appendNullable(b, n.Author)
	return append(b, `,"children":`...)
}

// appendCommentTail appends what follows a comment's children array.
func appendCommentTail(b []byte, n *Node, parentID, storyID int64) []byte {
	b = append(b, `,"created_at":`...)
	b = appendTime(b, n.CreatedAt, itemTimeLayout)
	b = append(b, `,"created_at_i":`...)
	b = strconv.AppendInt(b, n.CreatedAt.Unix(), 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, n.ID, 10)
	b = append(b, `,"options":[],"parent_id":`...)
	b = strconv.AppendInt(b, parentID, 10)
	b = append(b, `,"points":null,"story_id":`...)
	b = strconv.AppendInt(b, storyID, 10)
	b = append(b, `,"text":`...)
	b = appendNullable(b, n.Text)
	return append(b, `,"title":null,"type":"comment","url":null}`...)
}

// highlightValue is what the API shows as a highlight's value: the field with
// two of HN's entities decoded (the recorded hits show no other change).
var highlightValue = strings.NewReplacer("&#x27;", "'", "&#x2F;", "/").Replace

func appendHighlight(b []byte, key, value string) []byte {
	b = appendString(b, key)
	b = append(b, `:{"matchLevel":"none","matchedWords":[],"value":`...)
	b = appendString(b, highlightValue(value))
	return append(b, '}')
}

// derivedTag is the tag the API adds to a story for its kind: show_hn for a
// "Show HN" title, else ask_hn for a "Ask HN" title or a story without URL.
func derivedTag(t *Thread) string {
	if t.Type != "story" {
		return ""
	}
	switch {
	case strings.HasPrefix(t.Title, "Show HN"):
		return "show_hn"
	case strings.HasPrefix(t.Title, "Ask HN") || t.URL == "":
		return "ask_hn"
	}
	return ""
}

// appendHit appends the search hit of a stored thread.
func appendHit(b []byte, e *entry) []byte {
	t := e.t
	id := strconv.FormatInt(t.ID, 10)
	b = append(b, `{"_highlightResult":{`...)
	sep := ""
	if t.Author != "" {
		b = appendHighlight(b, "author", t.Author)
		sep = ","
	}
	if t.Text != "" {
		b = append(b, sep...)
		b = appendHighlight(b, "story_text", t.Text)
		sep = ","
	}
	b = append(b, sep...)
	b = appendHighlight(b, "title", t.Title)
	if t.URL != "" {
		b = append(b, ',')
		b = appendHighlight(b, "url", t.URL)
	}
	b = append(b, `},"_tags":[`...)
	b = appendString(b, t.Type)
	if t.Author != "" {
		b = append(b, ',')
		b = appendString(b, "author_"+t.Author)
	}
	b = append(b, `,"story_`...)
	b = append(b, id...)
	b = append(b, '"')
	if tag := derivedTag(t); tag != "" {
		b = append(b, ',')
		b = appendString(b, tag)
	}
	for _, tag := range t.Tags {
		b = append(b, ',')
		b = appendString(b, tag)
	}
	b = append(b, `],"author":`...)
	b = appendNullable(b, t.Author)
	if len(t.Children) > 0 {
		b = append(b, `,"children":[`...)
		for i, c := range t.Children {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, c.ID, 10)
		}
		b = append(b, ']')
	}
	b = append(b, `,"created_at":`...)
	b = appendTime(b, t.CreatedAt, hitTimeLayout)
	b = append(b, `,"created_at_i":`...)
	b = strconv.AppendInt(b, t.CreatedAt.Unix(), 10)
	b = append(b, `,"num_comments":`...)
	b = strconv.AppendInt(b, int64(e.live), 10)
	b = append(b, `,"objectID":"`...)
	b = append(b, id...)
	b = append(b, `","points":`...)
	b = strconv.AppendInt(b, int64(t.Points), 10)
	b = append(b, `,"story_id":`...)
	b = append(b, id...)
	if t.Text != "" {
		b = append(b, `,"story_text":`...)
		b = appendString(b, t.Text)
	}
	b = append(b, `,"title":`...)
	b = appendString(b, t.Title)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, t.UpdatedAt, hitTimeLayout)
	if t.URL != "" {
		b = append(b, `,"url":`...)
		b = appendString(b, t.URL)
	}
	return append(b, '}')
}

// appendErrorBody appends the body of an error response, in the shape Rails
// (which serves the HN Search API) gives its error pages:
// {"status":404,"error":"Not Found"}.
func appendErrorBody(b []byte, status int, text, message string) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"error":`...)
	b = appendString(b, text)
	if message != "" {
		b = append(b, `,"message":`...)
		b = appendString(b, message)
	}
	return append(b, '}')
}
