package hnfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// LoadDir reads every *.json file of dir (not its subdirectories) as an
// items/{id} body, like a recorded https://hn.algolia.com/api/v1/items/{id}
// response, and returns a Dataset of those threads. Until a thread is changed
// (Put, Edit), items/{id} serves its file's bytes verbatim; its comments are
// served from the parsed tree.
//
// A thread's updated_at is the top-level "updated_at" if the file has one,
// else the newest created_at in its tree. Trees of any depth load (the
// parser does not recurse). Keys other than the items format's are ignored.
// A file that is not JSON, or whose top level is a comment, is an error that
// names the file; so is a dir that does not exist.
func LoadDir(dir string) (*Dataset, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("hnfake: load: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("hnfake: load %s: not a directory", dir)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("hnfake: load %s: %w", dir, err)
	}
	slices.Sort(names)
	d := NewDataset()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("hnfake: load: %w", err)
		}
		t, err := parseItem(data)
		if err != nil {
			return nil, fmt.Errorf("hnfake: load %s: %w", name, err)
		}
		if d.byID[t.ID] != nil {
			return nil, fmt.Errorf("hnfake: load %s: thread %d is also in another file", name, t.ID)
		}
		d.storeLocked(t, data, false)
	}
	return d, nil
}

// parsedNode is a node being read: the fields of both threads and comments.
type parsedNode struct {
	Thread
	isRoot     bool
	inChildren bool
}

// parseItem reads an items/{id} body into a Thread, with json.Decoder's
// tokens and an explicit stack, so that depth is not limited.
func parseItem(data []byte) (*Thread, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("the body is not a JSON object")
	}
	root := &parsedNode{isRoot: true}
	stack := []*parsedNode{root}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if top.inChildren {
			switch tok {
			case json.Delim('{'):
				stack = append(stack, &parsedNode{})
			case json.Delim(']'):
				top.inChildren = false
			default:
				return nil, fmt.Errorf("item %d: children holds %v, not an object", top.ID, tok)
			}
			continue
		}
		if tok == json.Delim('}') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, &Node{
					ID: top.ID, Author: top.Author, Text: top.Text,
					CreatedAt: top.CreatedAt, Children: top.Children,
				})
			}
			continue
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("unexpected %v", tok)
		}
		if key == "children" {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			if tok == nil {
				continue
			}
			if tok != json.Delim('[') {
				return nil, fmt.Errorf("item %d: children is %v, not an array", top.ID, tok)
			}
			top.inChildren = true
			if top.Children == nil {
				top.Children = []*Node{}
			}
			continue
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if err := top.set(key, v); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level object")
	}
	t := root.Thread
	if t.ID <= 0 {
		return nil, fmt.Errorf("the top-level id is %d, not a positive integer", t.ID)
	}
	if t.Type == "comment" {
		return nil, fmt.Errorf("item %d is a comment, not a thread", t.ID)
	}
	return &t, nil
}

// set assigns one scalar field; keys that the model has no place for (ids
// derived from the tree, options, unknown keys) are ignored.
func (n *parsedNode) set(key string, v any) error {
	var err error
	switch key {
	case "id":
		n.ID, err = asInt(key, v)
	case "author":
		n.Author, err = asString(key, v)
	case "text":
		n.Text, err = asString(key, v)
	case "title":
		if n.isRoot {
			n.Title, err = asString(key, v)
		}
	case "url":
		if n.isRoot {
			n.URL, err = asString(key, v)
		}
	case "type":
		if n.isRoot {
			n.Type, err = asString(key, v)
		}
	case "points":
		if n.isRoot && v != nil {
			var p int64
			p, err = asInt(key, v)
			n.Points = int(p)
		}
	case "created_at":
		var s string
		if s, err = asString(key, v); err == nil && s != "" {
			n.CreatedAt, err = time.Parse(time.RFC3339Nano, s)
		}
	case "created_at_i":
		if n.CreatedAt.IsZero() && v != nil {
			var sec int64
			sec, err = asInt(key, v)
			n.CreatedAt = time.Unix(sec, 0).UTC()
		}
	case "updated_at":
		var s string
		if s, err = asString(key, v); err == nil && s != "" && n.isRoot {
			n.UpdatedAt, err = time.Parse(time.RFC3339Nano, s)
		}
	}
	if err != nil {
		return fmt.Errorf("item %d: %w", n.ID, err)
	}
	return nil
}

func asString(key string, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("%s is %T, not a string", key, v)
}

func asInt(key string, v any) (int64, error) {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s is %v, not an integer", key, v)
}
