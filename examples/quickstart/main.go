// Command quickstart keeps a JSON index of a directory of notes in sync with
// the directory, incrementally: run it twice and the second run reads no
// file; edit, add or delete a note and only that note is read and written.
// Its state is kept in an embedded SQLite file.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -notes ~/notes -out index.json -db state.db
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/localfs"
	"github.com/tidemark/tidemark/target"
)

func main() {
	notes := flag.String("notes", "examples/quickstart/notes", "directory of .md notes to index")
	out := flag.String("out", "notes-index.json", "the JSON index to keep in sync")
	db := flag.String("db", "quickstart.db", "the SQLite state store")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *notes, *out, *db); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// Note is one indexed note.
type Note struct {
	Name  string
	Title string
	Words int
}

func run(ctx context.Context, notesDir, out, db string) error {
	// Checked before anything is opened, so that a run from another folder
	// creates nothing there.
	if fi, err := os.Stat(notesDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("no directory of notes at %s: run from the repository's root, or pass -notes DIR", notesDir)
	}
	flow := tidemark.NewFlow("NotesIndex", tidemark.LogicVersion("1"))
	index := tidemark.Custom(flow, &jsonIndex{}, indexSpec{Path: out})
	// The .md files of the directory: a file is read only when its mtime
	// moved, and processed only when its bytes did.
	dir, err := localfs.New(notesDir, localfs.Options{Include: []string{"*.md"}})
	if err != nil {
		return err
	}
	defer dir.Close()
	notes := tidemark.AddSource(flow, "notes", dir)
	tidemark.ForEach(notes, func(_ context.Context, r *tidemark.Row, name string, file localfs.File) error {
		b, err := file.ReadAll()
		if err != nil {
			return err
		}
		text := string(b)
		title, _, _ := strings.Cut(strings.TrimPrefix(text, "# "), "\n")
		index.Declare(r, target.Key(name), Note{Name: name, Title: title, Words: len(strings.Fields(text))})
		return nil
	})

	engine, err := tidemark.Open(ctx, flow, tidemark.Options{
		StateStore: db,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer engine.Close()
	st, err := engine.Update(ctx, tidemark.UpdateOptions{})
	if err != nil {
		return err
	}
	s := st.Sources["notes"]
	fmt.Printf("notes: listed %d, read %d, added %d, updated %d, deleted %d, unchanged %d, failed %d\n",
		s.Listed, s.Fetched, s.Added, s.Updated, s.Deleted, s.Unchanged, s.Errors)
	t := st.Targets["index/"+out]
	fmt.Printf("%s: %d written, %d deleted\n", out, t.Upserts, t.Deletes)
	return nil
}

// indexSpec names the JSON file of an index.
type indexSpec struct{ Path string }

// jsonIndex is a simple connector keeping notes in a JSON file, rewritten
// atomically on every batch.
type jsonIndex struct{}

// PersistentKey implements target.Connector: an index is known by its path.
func (*jsonIndex) PersistentKey(s indexSpec) target.Key { return target.Key("index/" + s.Path) }

// Describe implements target.Connector.
func (*jsonIndex) Describe(key target.Key) string {
	return "JSON index " + strings.TrimPrefix(string(key), "index/")
}

// ApplySetupChange implements target.Connector: it creates the file, or
// removes the old one when the path changes or the index is dropped.
func (*jsonIndex) ApplySetupChange(_ context.Context, _ target.Key, prev, cur *indexSpec) error {
	if prev != nil && (cur == nil || prev.Path != cur.Path) {
		if err := os.Remove(prev.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if cur != nil {
		if _, err := os.Stat(cur.Path); errors.Is(err, fs.ErrNotExist) {
			return writeJSON(cur.Path, map[string]Note{})
		}
	}
	return nil
}

// Mutate implements target.Connector: it applies the changes to each
// index file and rewrites it atomically.
func (*jsonIndex) Mutate(_ context.Context, batch []target.Mutation[indexSpec, Note]) error {
	for _, m := range batch {
		notes := map[string]Note{}
		b, err := os.ReadFile(m.Spec.Path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &notes); err != nil {
				return fmt.Errorf("reading %s: %w", m.Spec.Path, err)
			}
		}
		for _, c := range m.Changes {
			if c.Value == nil {
				delete(notes, string(c.Key))
			} else {
				notes[string(c.Key)] = *c.Value
			}
		}
		if err := writeJSON(m.Spec.Path, notes); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON writes v to path atomically: a temporary file, then a rename.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
