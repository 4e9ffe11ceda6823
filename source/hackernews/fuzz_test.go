package hackernews_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidemark/tidemark/source/hackernews"
)

// maxFuzzLen bounds the inputs the fuzz targets look at. The fuzzer
// minimizes each new interesting input in time quadratic in its length (a
// minute for a few kilobytes), during which it runs nothing else; large
// inputs are covered by the unit tests instead.
const maxFuzzLen = 1 << 10

// FuzzParseItem checks that ParseItem never panics, agrees with
// encoding/json on what is valid JSON, and keeps each comment id once. The
// seeds are the recorded item's subtrees, byte for byte (items/{id} of a
// comment is its subtree), and a few shapes of our own.
func FuzzParseItem(f *testing.F) {
	for _, tree := range subtrees(f, readTestdata(f, recordedItem)) {
		if len(tree) <= maxFuzzLen {
			f.Add(tree)
		}
	}
	f.Add([]byte(deepThread(20)))
	f.Add([]byte(`{"id":1,"children":[{"id":2},{"id":2,"children":[{"id":1}]},{"text":null}]}`))
	f.Add([]byte(`{"id":"7","title":"\ud83d\ude00 \u00e9","children":[{"id":8,"parent_id":"7","children":null}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`{"id":1,"x":[1,{"a":-0.5e+10},true,false,null,"x"]}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzLen {
			return
		}
		thread, exists, err := hackernews.ParseItem(bytes.NewReader(body))
		blank := len(bytes.TrimSpace(body)) == 0
		// encoding/json limits nesting to 10,000; ParseItem does not.
		shallow := bytes.Count(body, []byte("["))+bytes.Count(body, []byte("{")) < 10_000
		if err != nil {
			if !errors.Is(err, hackernews.ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			if exists || thread.ID != "" || thread.Comments != nil {
				t.Fatalf("error %v with a thread", err)
			}
			return
		}
		if shallow && !blank && !json.Valid(body) {
			t.Fatalf("accepted JSON that encoding/json rejects: %q", body)
		}
		if !exists {
			if !blank && string(bytes.TrimSpace(body)) != "null" {
				t.Fatalf("gone for a body that is neither empty nor null: %q", body)
			}
			return
		}
		if thread.ID == "" {
			t.Fatal("a thread without an id")
		}
		seen := map[string]bool{thread.ID: true}
		for _, c := range thread.Comments {
			if c.ID == "" || seen[c.ID] {
				t.Fatalf("comment id %q empty or met twice", c.ID)
			}
			seen[c.ID] = true
		}
		for _, s := range []string{thread.Title, thread.Text, thread.Author, thread.URL, thread.Type} {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 in %q", s)
			}
		}
	})
}

// FuzzPlainText checks that PlainText never panics and returns trimmed,
// valid UTF-8 without NUL bytes; and that text without markup or entities
// only has its whitespace collapsed. The seeds are the recorded comments'
// texts and the recorded story texts, in pieces of whole paragraphs.
func FuzzPlainText(f *testing.F) {
	thread, _, err := hackernews.ParseItem(bytes.NewReader(readTestdata(f, recordedItem)))
	if err != nil {
		f.Fatal(err)
	}
	var texts []string
	for _, c := range thread.Comments {
		texts = append(texts, c.Text)
	}
	for _, s := range recordedTexts(f) {
		piece := ""
		for _, p := range strings.Split(s, "<p>") {
			if piece != "" && len(piece)+len(p) > maxFuzzLen/2 {
				texts = append(texts, piece)
				piece = ""
			}
			piece += "<p>" + p
		}
		texts = append(texts, piece)
	}
	texts = append(texts,
		"", "a<p>b", "<pre><code>  x\n  y\n</code></pre>", `<a href="x>y">t</a>`, "a <", "<!--", "&#0;&#xD800;&amp",
		"a\x00b\xff", "<i>x</i>\u00a0 y", "<pre>a<pre>b</pre>c", "</pre></p><br>",
	)
	for _, s := range texts {
		if len(s) <= maxFuzzLen {
			f.Add(s)
		}
	}

	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzLen {
			return
		}
		out := hackernews.PlainText(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		if strings.IndexByte(out, 0) >= 0 {
			t.Fatalf("NUL in %q", out)
		}
		if out != strings.TrimSpace(out) {
			t.Fatalf("not trimmed: %q", out)
		}
		if !strings.ContainsAny(in, "<&") {
			clean := strings.ReplaceAll(strings.ToValidUTF8(in, "\uFFFD"), "\x00", "")
			want := strings.TrimSpace(strings.Join(strings.FieldsFunc(clean, func(r rune) bool {
				return r == ' ' || r == '\t' || r == '\n' || r == '\f' || r == '\r'
			}), " "))
			if out != want {
				t.Fatalf("PlainText(%q) = %q, want %q", in, out, want)
			}
		}
	})
}

// subtrees returns the bytes of every item object in body, the root
// included, as they are in body.
func subtrees(t testing.TB, body []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for queue := [][]byte{body}; len(queue) > 0; queue = queue[1:] {
		var n struct {
			Children []json.RawMessage `json:"children"`
		}
		if err := json.Unmarshal(queue[0], &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, queue[0])
		for _, c := range n.Children {
			queue = append(queue, c)
		}
	}
	return out
}
