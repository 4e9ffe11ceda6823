package hackernews_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews"
)

func TestPlainText(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		in, want string
	}{
		"empty":               {"", ""},
		"plain":               {"hello world", "hello world"},
		"paragraphs":          {"one<p>two<p>three", "one\n\ntwo\n\nthree"},
		"closed paragraphs":   {"<p>one</p><p>two</p>", "one\n\ntwo"},
		"paragraph spacing":   {"one. <p> two", "one.\n\ntwo"},
		"empty paragraphs":    {"one<p><p><p>two", "one\n\ntwo"},
		"only tags":           {"<p><i></i><p>", ""},
		"upper case tags":     {"A<P>B<BR>C", "A\n\nB\nC"},
		"line breaks":         {"a<br>b<br/>c<br />d", "a\nb\nc\nd"},
		"double line break":   {"a<br><br>b", "a\n\nb"},
		"HN entities":         {"I&#x27;d &#x2F; &quot;q&quot; &amp; &gt; &lt;", `I'd / "q" & > <`},
		"named entities":      {"caf&eacute;&nbsp;&hellip; &copy; &mdash;", "café\u00a0… © —"},
		"numeric entities":    {"&#65;&#x42;&#x1F600;", "AB😀"},
		"entity without semi": {"AT&amp;T &amp", "AT&T &"},
		"not an entity":       {"a & b &zzz; c", "a & b &zzz; c"},
		"NUL entity":          {"a&#0;b", "a\uFFFDb"},
		"escaped tag is text": {"&lt;p&gt; stays", "<p> stays"},
		"link":                {`see <a href="https:&#x2F;&#x2F;x.com&#x2F;a" rel="nofollow">https:&#x2F;&#x2F;x.com&#x2F;a</a> ok`, "see https://x.com/a ok"},
		"link text not href":  {`<a href="http://secret.example/">click</a> here`, "click here"},
		"italic":              {"<i>very</i> good", "very good"},
		"italic mid-word":     {"un<i>believ</i>able", "unbelievable"},
		"nested tags":         {`<p><i><a href="x">a</a></i></p>b`, "a\n\nb"},
		"whitespace":          {"  a \n\t b \r\n  c  ", "a b c"},
		"whitespace in tags":  {"a<i> </i>b", "a b"},
		"pre code": {
			"Code:<p><pre><code>  if x {\n    y()\n  }\n</code></pre>\nAfter",
			"Code:\n\n  if x {\n    y()\n  }\n\nAfter",
		},
		"pre entities":         {"<pre><code>a &lt; b &amp;&amp; c\n  d</code></pre>", "a < b && c\n  d"},
		"pre blank lines":      {"x<pre><code>a\n\n\nb</code></pre>y", "x\n\na\n\n\nb\n\ny"},
		"pre unterminated":     {"x<pre><code>  a\n  b", "x\n\n  a\n  b"},
		"pre first":            {"<pre><code>  a\n</code></pre>", "a"},
		"pre CRLF":             {"<pre>a\r\nb</pre>", "a\nb"},
		"pre with link":        {"<pre><code>see <a href=\"u\">u</a>\n</code></pre>", "see u"},
		"stray end pre":        {"a</pre>b", "ab"},
		"unterminated tag":     {`a <a href="x`, "a"},
		"unterminated quote":   {`a <a href="x>y`, "a"},
		"unterminated end":     {"a</i", "a"},
		"quoted >":             {`<a title="x>y">t</a>`, "t"},
		"single-quoted >":      {`<a title='x>y'>t</a>`, "t"},
		"apostrophe in tag":    {`<i don't>x</i>`, "x"},
		"lone <":               {"a < b", "a < b"},
		"< before digit":       {"1<2 and 3 <= 4", "1<2 and 3 <= 4"},
		"< at end":             {"a <", "a <"},
		"</ alone":             {"a </ b", "a </ b"},
		"comment":              {"a<!-- hidden <p> -->b", "ab"},
		"unterminated comment": {"a<!-- hidden", "a"},
		"doctype":              {"<!DOCTYPE html>a", "a"},
		"block tags":           {"<div>a</div><ul><li>b<li>c</ul>d", "a\n\nb\nc\n\nd"},
		"NUL":                  {"a\x00b\x00", "ab"},
		"invalid UTF-8":        {"a\xffb\xc3", "a\uFFFDb\uFFFD"},
		"real comment": {
			`I don&#x27;t think you&#x27;re wrong.<p><a href="https:&#x2F;&#x2F;www.sfgate.com&#x2F;food" rel="nofollow">https:&#x2F;&#x2F;www.sfgate.com&#x2F;food</a>`,
			"I don't think you're wrong.\n\nhttps://www.sfgate.com/food",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, hackernews.PlainText(tt.in))
		})
	}
}

// TestPlainTextRecorded converts the real story texts of a recorded search:
// no tag or entity is left, paragraphs are kept.
func TestPlainTextRecorded(t *testing.T) {
	t.Parallel()

	texts := recordedTexts(t)
	require.Len(t, texts, 12+12) // story_text and its highlighted copy per hit
	for _, html := range texts {
		got := hackernews.PlainText(html)
		require.True(t, utf8.ValidString(got))
		require.NotContains(t, got, "<p>")
		require.NotContains(t, got, "<a ")
		require.NotContains(t, got, "</a>")
		require.NotContains(t, got, "&#x2F;")
		require.NotContains(t, got, "&#x27;")
		require.Equal(t, strings.Count(html, "<p>"), strings.Count(got, "\n\n"))
	}
}

// recordedTexts returns the HTML texts of the recorded search: each hit's
// story_text and the highlighted value of it.
func recordedTexts(t testing.TB) []string {
	t.Helper()
	var page struct {
		Hits []struct {
			StoryText string `json:"story_text"`
			Highlight struct {
				StoryText struct {
					Value string `json:"value"`
				} `json:"story_text"`
			} `json:"_highlightResult"`
		} `json:"hits"`
	}
	require.NoError(t, json.Unmarshal(readTestdata(t, "testdata/search-query_hiring-tags_story_author_whoishiring.json"), &page))
	var texts []string
	for _, h := range page.Hits {
		texts = append(texts, h.StoryText, h.Highlight.StoryText.Value)
	}
	return texts
}
