package httpsource

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// A Pager says which page of a listing comes after the one read: its URL,
// or "" when that was the last. page is the page read (decoded with
// UseNumber), items how many items it held.
type Pager interface {
	Next(cur *url.URL, resp *Response, page any, items int) (string, error)
}

// LinkNext follows the Link header's rel="next" (RFC 8288), as GitHub's
// and many REST APIs page; the listing ends on a page without one.
func LinkNext() Pager { return linkNext{} }

type linkNext struct{}

func (linkNext) Next(cur *url.URL, resp *Response, _ any, _ int) (string, error) {
	for _, h := range resp.Header.Values("Link") {
		for _, l := range parseLinks(h) {
			if hasRel(l.params["rel"], "next") {
				next, err := cur.Parse(l.target)
				if err != nil {
					return "", fmt.Errorf("httpsource: Link header: %w", err)
				}
				return next.String(), nil
			}
		}
	}
	return "", nil
}

// link is one link of a Link header: its target and parameters, names in
// lower case.
type link struct {
	target string
	params map[string]string
}

// parseLinks parses a Link header (RFC 8288): links separated by commas
// outside their <target> and quoted values, which may hold commas.
func parseLinks(h string) []link {
	var out []link
	for i := 0; i < len(h); {
		lt := strings.IndexByte(h[i:], '<')
		if lt < 0 {
			break
		}
		gt := strings.IndexByte(h[i+lt:], '>')
		if gt < 0 {
			break
		}
		l := link{target: h[i+lt+1 : i+lt+gt], params: make(map[string]string)}
		j := i + lt + gt + 1
		// Parameters up to the next comma outside quotes.
		for j < len(h) && h[j] != ',' {
			if h[j] != ';' {
				j++
				continue
			}
			j++
			start := j
			for j < len(h) && h[j] != '=' && h[j] != ';' && h[j] != ',' {
				j++
			}
			name := strings.ToLower(strings.TrimSpace(h[start:j]))
			value := ""
			if j < len(h) && h[j] == '=' {
				j++
				for j < len(h) && h[j] == ' ' {
					j++
				}
				if j < len(h) && h[j] == '"' {
					end := strings.IndexByte(h[j+1:], '"')
					if end < 0 {
						end = len(h) - j - 1
					}
					value = h[j+1 : j+1+end]
					j += end + 2
				} else {
					start := j
					for j < len(h) && h[j] != ';' && h[j] != ',' {
						j++
					}
					value = strings.TrimSpace(h[start:j])
				}
			}
			if _, seen := l.params[name]; !seen && name != "" {
				l.params[name] = value
			}
		}
		out = append(out, l)
		i = j + 1
	}
	return out
}

func hasRel(rels, want string) bool {
	for _, r := range strings.Fields(rels) {
		if strings.EqualFold(r, want) {
			return true
		}
	}
	return false
}

// Cursor reads the next page's cursor at the JSON pointer ptr of a page
// (such as "/meta/next_cursor") and asks for it as the query parameter
// param of the listing URL; the listing ends when the cursor is missing,
// null or empty.
func Cursor(ptr, param string) Pager { return cursor{ptr: ptr, param: param} }

type cursor struct{ ptr, param string }

func (c cursor) Next(cur *url.URL, _ *Response, page any, _ int) (string, error) {
	v, ok := resolve(page, c.ptr)
	if !ok || v == nil {
		return "", nil
	}
	text, ok := scalarText(v)
	if !ok {
		if s, isString := v.(string); isString && s == "" {
			return "", nil
		}
		return "", fmt.Errorf("httpsource: the cursor at %s is %T, not a string or number", c.ptr, v)
	}
	next := *cur
	q := next.Query()
	q.Set(c.param, text)
	next.RawQuery = q.Encode()
	return next.String(), nil
}

// PageNumber asks for pages first, first+1, … as the query parameter
// param; the listing ends on a page with no items. Offset pages shift
// when an item is removed from a page already read: the item that moved
// up onto it is not listed, and is deleted until the next listing finds
// it again. Prefer LinkNext or Cursor where the API has a stable cursor.
func PageNumber(param string, first int) Pager { return pageNumber{param: param, first: first} }

type pageNumber struct {
	param string
	first int
}

func (p pageNumber) Next(cur *url.URL, _ *Response, _ any, items int) (string, error) {
	if items == 0 {
		return "", nil
	}
	n := p.first
	if s := cur.Query().Get(p.param); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			return "", fmt.Errorf("httpsource: page parameter %s=%q is not a number", p.param, s)
		}
		n = v
	}
	next := *cur
	q := next.Query()
	q.Set(p.param, strconv.Itoa(n+1))
	next.RawQuery = q.Encode()
	return next.String(), nil
}
