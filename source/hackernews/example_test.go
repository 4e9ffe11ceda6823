package hackernews_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/tidemark/tidemark/source/hackernews"
)

func ExamplePlainText() {
	html := `I don&#x27;t think so.<p>See <a href="https:&#x2F;&#x2F;example.com" rel="nofollow">the docs</a>:<p>` +
		"<pre><code>  go test ./...\n</code></pre>"
	fmt.Println(hackernews.PlainText(html))
	// Output:
	// I don't think so.
	//
	// See the docs:
	//
	//   go test ./...
}

func ExampleParseItem() {
	body := `{"id":1,"type":"story","title":"Ask HN: Why?","author":"pg","children":[
		{"id":2,"parent_id":1,"author":"a","text":"Because.","children":[
			{"id":3,"parent_id":2,"author":null,"text":null,"children":[]}]}]}`
	thread, exists, err := hackernews.ParseItem(strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	fmt.Println(exists, thread.ID, thread.Title)
	for _, c := range thread.Comments {
		fmt.Printf("%s replies to %s: %q by %q\n", c.ID, c.ParentID, c.Text, c.Author)
	}
	// Output:
	// true 1 Ask HN: Why?
	// 2 replies to 1: "Because." by "a"
	// 3 replies to 2: "" by ""
}

// ExampleSource_Get gets a thread from a test server standing in for the
// API, serving a recorded response.
func ExampleSource_Get() {
	body, err := os.ReadFile("testdata/items-40500071.json")
	if err != nil {
		panic(err)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/items/40500071" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer api.Close()

	src, err := hackernews.New(hackernews.Options{BaseURL: api.URL})
	if err != nil {
		panic(err)
	}
	f, err := src.Get(context.Background(), "40500071")
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Exists, f.Value.Title, len(f.Value.Comments))
	first := f.Value.Comments[0]
	fmt.Println(first.Author, first.CreatedAt)

	gone, err := src.Get(context.Background(), "1")
	fmt.Println(gone.Exists, err)
	// Output:
	// true Lorem Ipsum Dolor Sit Amet Consectetur Adipiscing Elit 12
	// jonny_eh 2024-05-29 16:41:07 +0000 UTC
	// false <nil>
}
