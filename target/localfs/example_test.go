package localfs_test

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/localfs"
	"github.com/tidemark/tidemark/tidemarktest"
)

// note is a markdown-ish document: a title and paragraphs separated by
// blank lines.
type note struct {
	Title string
	Body  string
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<title>{{.Title}}</title>
<h1>{{.Title}}</h1>
{{range .Paragraphs}}<p>{{.}}</p>
{{end}}`))

// render renders a note as a small HTML page, escaping its text.
func render(n note) ([]byte, error) {
	var buf bytes.Buffer
	err := page.Execute(&buf, struct {
		Title      string
		Paragraphs []string
	}{n.Title, strings.Split(n.Body, "\n\n")})
	return buf.Bytes(), err
}

// Render each row of a source to an HTML file, as CocoIndex's "custom
// output files" example does. Files of rows that change are rewritten,
// files of rows that go away are deleted.
func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "localfs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	site := filepath.Join(tmp, "site")

	notes := tidemarktest.NewSource[string, note]()
	notes.Set("fish", note{Title: "Fish & Chips <Recipe>", Body: "Batter the fish.\n\nFry until golden."})
	notes.Set("tea", note{Title: "Tea", Body: "Boil water."})
	notes.Set("drafts/todo", note{Title: "To do", Body: "Write more notes."})

	flow := tidemark.NewFlow("Notes")
	pages := localfs.Directory(flow, site)
	tidemark.ForEach(tidemark.AddSource(flow, "notes", notes),
		func(_ context.Context, r *tidemark.Row, id string, n note) error {
			html, err := render(n)
			if err != nil {
				return err
			}
			pages.Declare(r, target.Key(id+".html"), localfs.File{Content: html})
			return nil
		})

	engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: filepath.Join(tmp, "state.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
		log.Fatal(err)
	}

	// WalkDir lists in lexical order.
	err = filepath.WalkDir(site, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(site, p)
		fmt.Println(filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fish, err := os.ReadFile(filepath.Join(site, "fish.html"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print("\n", string(fish))
	// Output:
	// .tidemark-directory
	// drafts/todo.html
	// fish.html
	// tea.html
	//
	// <!doctype html>
	// <title>Fish &amp; Chips &lt;Recipe&gt;</title>
	// <h1>Fish &amp; Chips &lt;Recipe&gt;</h1>
	// <p>Batter the fish.</p>
	// <p>Fry until golden.</p>
}
