package hackernews

import (
	"html"
	"strings"
)

// PlainText converts the HTML of a HackerNews text (a comment, a story's
// text) to plain text, for indexing and display:
//
//   - tags are removed; the text of a link is kept, not its address;
//   - entities are decoded (all of HTML's, as html.UnescapeString does);
//   - <p> separates paragraphs with a blank line ("\n\n"), <br> is a line
//     break;
//   - the content of <pre> (HN's <pre><code> blocks) is kept verbatim, line
//     breaks and indentation included, as a paragraph of its own;
//   - elsewhere, runs of whitespace collapse to one space;
//   - the result is trimmed.
//
// It accepts any input and never panics: an unterminated tag is dropped, a
// '<' that starts no tag is kept as text, invalid UTF-8 becomes U+FFFD and
// NUL bytes are removed. The result is valid UTF-8.
func PlainText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	var w textWriter
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			w.text(s)
			break
		}
		w.text(s[:i])
		s = s[i:]
		name, closing, n, ok := scanTag(s)
		if !ok {
			w.text("<")
			s = s[1:]
			continue
		}
		w.tag(name, closing)
		s = s[n:]
	}
	out := strings.TrimSpace(w.finish())
	if strings.IndexByte(out, 0) >= 0 { // never expected: entities decode NUL as U+FFFD
		out = strings.ReplaceAll(out, "\x00", "")
	}
	return out
}

// scanTag reads the markup at the start of s, which begins with '<': a
// start or end tag, or a comment, doctype or processing instruction (with
// an empty name). It returns the tag's lower-case name, whether it is an
// end tag and the length of the markup; ok is false when the '<' starts no
// markup and is text. Markup left unterminated runs to the end of s.
func scanTag(s string) (name string, closing bool, n int, ok bool) {
	i := 1
	if i < len(s) && s[i] == '/' {
		closing = true
		i++
	}
	switch {
	case i < len(s) && isLetter(s[i]):
		start := i
		for i < len(s) && (isLetter(s[i]) || ('0' <= s[i] && s[i] <= '9')) {
			i++
		}
		name = strings.ToLower(s[start:i])
	case !closing && strings.HasPrefix(s, "<!--"):
		if end := strings.Index(s[4:], "-->"); end >= 0 {
			return "", false, 4 + end + 3, true
		}
		return "", false, len(s), true
	case !closing && i < len(s) && (s[i] == '!' || s[i] == '?'):
	default:
		return "", false, 0, false
	}
	// Attributes, up to '>'; a quoted value may hold '>'.
	for i < len(s) {
		switch s[i] {
		case '>':
			return name, closing, i + 1, true
		case '=':
			i++
			for i < len(s) && isHTMLSpace(s[i]) {
				i++
			}
			if i < len(s) && (s[i] == '"' || s[i] == '\'') {
				end := strings.IndexByte(s[i+1:], s[i])
				if end < 0 {
					return name, closing, len(s), true
				}
				i += 1 + end + 1
			}
			continue
		}
		i++
	}
	return name, closing, len(s), true
}

func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// isHTMLSpace reports whether c is whitespace as HTML defines it.
func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// textWriter builds PlainText's output. Whitespace and line breaks are
// held back until the next visible text, so that none leads, trails or
// doubles.
type textWriter struct {
	b     strings.Builder
	space bool // a space is due before the next text
	lines int  // line breaks due before the next text; wins over space
	pre   int  // depth of open <pre> elements
	code  strings.Builder
}

// text writes text from between tags, decoding its entities.
func (w *textWriter) text(raw string) {
	if raw == "" {
		return
	}
	t := raw
	if strings.IndexByte(raw, '&') >= 0 {
		t = html.UnescapeString(raw)
	}
	if w.pre > 0 {
		w.code.WriteString(t)
		return
	}
	for len(t) > 0 {
		i := 0
		for i < len(t) && isHTMLSpace(t[i]) {
			i++
		}
		if i > 0 {
			w.space = true
			t = t[i:]
			continue
		}
		for i < len(t) && !isHTMLSpace(t[i]) {
			i++
		}
		w.flushPending()
		w.b.WriteString(t[:i])
		t = t[i:]
	}
}

// flushPending writes the space or line breaks due, unless nothing was
// written yet.
func (w *textWriter) flushPending() {
	switch {
	case w.b.Len() == 0:
	case w.lines > 0:
		w.b.WriteString(strings.Repeat("\n", w.lines))
	case w.space:
		w.b.WriteByte(' ')
	}
	w.lines, w.space = 0, false
}

// breakAtLeast makes at least n line breaks due.
func (w *textWriter) breakAtLeast(n int) { w.lines = max(w.lines, n) }

// tag applies a start or end tag.
func (w *textWriter) tag(name string, closing bool) {
	if w.pre > 0 {
		switch {
		case name == "pre" && closing:
			w.pre--
			if w.pre == 0 {
				w.flushCode()
			}
		case name == "pre":
			w.pre++
		case name == "br":
			w.code.WriteByte('\n')
		case name == "p":
			w.code.WriteString("\n\n")
		}
		return
	}
	switch name {
	case "pre":
		if !closing {
			w.pre = 1
			w.breakAtLeast(2)
		}
	case "br":
		w.lines++
	case "p", "div", "blockquote", "ul", "ol", "table", "hr",
		"h1", "h2", "h3", "h4", "h5", "h6":
		w.breakAtLeast(2)
	case "li", "tr", "dt", "dd":
		w.breakAtLeast(1)
	}
}

// flushCode writes the content of a <pre> block as it is, without its
// leading blank lines and trailing whitespace, as a paragraph.
func (w *textWriter) flushCode() {
	c := strings.ReplaceAll(w.code.String(), "\r\n", "\n")
	w.code.Reset()
	c = strings.TrimLeft(c, "\n")
	c = strings.TrimRight(c, " \t\n\r\f")
	if c != "" {
		w.breakAtLeast(2)
		w.flushPending()
		w.b.WriteString(c)
	}
	w.breakAtLeast(2)
}

// finish closes an unterminated <pre> and returns the text.
func (w *textWriter) finish() string {
	if w.pre > 0 {
		w.pre = 0
		w.flushCode()
	}
	return w.b.String()
}
