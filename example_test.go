package tidemark_test

import (
	"context"
	"fmt"
	"iter"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// catalog is a custom source: a product catalog whose listing gives each
// product's SKU and version, and whose Get returns one product.
type catalog struct {
	mu       sync.Mutex
	products map[string]product
	fetches  int
}

type product struct {
	Name    string
	Price   int // cents
	Version int64
}

func (c *catalog) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		c.mu.Lock()
		listed := make([]tidemark.Listed[string], 0, len(c.products))
		for sku, p := range c.products {
			listed = append(listed, tidemark.Listed[string]{Key: sku, Ordinal: tidemark.Ordinal(p.Version)})
		}
		c.mu.Unlock()
		for _, l := range listed {
			if !yield(l, nil) {
				return
			}
		}
	}
}

func (c *catalog) Get(ctx context.Context, sku string) (tidemark.Fetched[product], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetches++
	p, ok := c.products[sku]
	return tidemark.Fetched[product]{Exists: ok, Value: p, Ordinal: tidemark.Ordinal(p.Version)}, nil
}

// exampleStateStore returns a fresh SQLite state store path and a cleanup.
func exampleStateStore() (string, func()) {
	dir, err := os.MkdirTemp("", "tidemark-example")
	if err != nil {
		log.Fatal(err)
	}
	return filepath.Join(dir, "state.db"), func() { os.RemoveAll(dir) }
}

// A custom source lists keys with ordinals and gets one row. Tidemark
// fetches only the rows whose ordinal moved.
func ExampleSource() {
	ctx := context.Background()
	path, cleanup := exampleStateStore()
	defer cleanup()

	src := &catalog{products: map[string]product{
		"A-1": {Name: "Anchor", Price: 1999, Version: 1},
		"B-2": {Name: "Buoy", Price: 4500, Version: 1},
		"C-3": {Name: "Cleat", Price: 799, Version: 1},
	}}
	db := tidemarktest.NewDB()

	update := func() {
		flow := tidemark.NewFlow("Catalog")
		prices := tidemarktest.Table[string](flow, db, "prices")
		tidemark.ForEach(tidemark.AddSource(flow, "products", tidemark.Source[string, product](src)),
			func(_ context.Context, r *tidemark.Row, sku string, p product) error {
				prices.Declare(r, target.Key(sku), fmt.Sprintf("%s: $%d.%02d", p.Name, p.Price/100, p.Price%100))
				return nil
			})
		engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: path})
		if err != nil {
			log.Fatal(err)
		}
		defer engine.Close()
		src.fetches = 0
		st, err := engine.Update(ctx, tidemark.UpdateOptions{})
		if err != nil {
			log.Fatal(err)
		}
		s := st.Sources["products"]
		fmt.Printf("listed %d, fetched %d, added %d, updated %d, deleted %d\n", s.Listed, src.fetches, s.Added, s.Updated, s.Deleted)
	}

	update()
	update() // nothing changed: nothing fetched

	src.mu.Lock()
	src.products["B-2"] = product{Name: "Buoy", Price: 3900, Version: 2}
	delete(src.products, "C-3")
	src.mu.Unlock()
	update()

	rows := db.Rows("prices")
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		fmt.Println(k, "=", rows[k])
	}
	// Output:
	// listed 3, fetched 3, added 3, updated 0, deleted 0
	// listed 3, fetched 0, added 0, updated 0, deleted 0
	// listed 2, fetched 1, added 0, updated 1, deleted 1
	// A-1 = Anchor: $19.99
	// B-2 = Buoy: $39.00
}

// printSink is a sink that prints what it applies, in key order.
type printSink struct{}

type kvAction struct {
	Key   target.Key
	Value *string // nil: delete
}

func (printSink) Apply(_ context.Context, actions []kvAction) error {
	slices.SortFunc(actions, func(a, b kvAction) int { return strings.Compare(string(a.Key), string(b.Key)) })
	for _, a := range actions {
		if a.Value == nil {
			fmt.Printf("  delete %s\n", a.Key)
		} else {
			fmt.Printf("  put %s = %q\n", a.Key, *a.Value)
		}
	}
	return nil
}

// kvHandler is a full target handler for the entries of a key-value store:
// it remembers a fingerprint of each value and writes only what changed.
type kvHandler struct{ sink *printSink }

func (h kvHandler) Reconcile(key target.Key, desired *string, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil // never written: nothing to delete
		}
		return &target.Reconciled{Action: target.Do(h.sink, kvAction{Key: key})}, nil
	}
	rec, err := target.Fingerprint(*desired)
	if err != nil {
		return nil, err
	}
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &target.Reconciled{Action: target.Do(h.sink, kvAction{Key: key, Value: desired}), Record: rec}, nil
}

// kvStore is the container: one store, created once; its sink hands out the
// entries' handler.
type kvStore struct {
	containerSink *target.ContainerSinkFunc[string]
}

func newKVStore() *kvStore {
	s := &kvStore{}
	entries := kvHandler{sink: &printSink{}}
	s.containerSink = target.NewContainerSink(func(_ context.Context, actions []string) ([]target.Erased, error) {
		children := make([]target.Erased, len(actions))
		for i, a := range actions {
			if a != "keep" {
				fmt.Println("  store:", a)
			}
			children[i] = target.Erase[string](entries)
		}
		return children, nil
	})
	return s
}

// Reconcile reconciles the store itself. A container always returns an
// action, so that its sink can give the handler of its entries.
func (s *kvStore) Reconcile(key target.Key, desired *string, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	switch {
	case desired == nil:
		return &target.Reconciled{Action: target.DoContainer(s.containerSink, "drop "+string(key))}, nil
	case len(prev) == 0:
		return &target.Reconciled{Action: target.DoContainer(s.containerSink, "create "+string(key)), Record: []byte(*desired)}, nil
	default:
		return &target.Reconciled{Action: target.DoContainer(s.containerSink, "keep"), Record: []byte(*desired)}, nil
	}
}

// A full target handler reconciles each declared state against the records
// of what may exist, and its sink applies the resulting actions in batches.
func ExampleDeclareContainer() {
	ctx := context.Background()
	path, cleanup := exampleStateStore()
	defer cleanup()

	src := tidemarktest.NewSource[string, string]()
	src.Set("greeting", "hello")
	src.Set("farewell", "goodbye")
	store := newKVStore()

	update := func() {
		flow := tidemark.NewFlow("KV")
		entries := tidemark.DeclareContainer[string, string](flow, "example.kv", "kv/main", store, "v1")
		tidemark.ForEach(tidemark.AddSource(flow, "phrases", src), func(_ context.Context, r *tidemark.Row, key, phrase string) error {
			entries.Declare(r, target.Key(key), strings.ToUpper(phrase))
			return nil
		})
		engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: path})
		if err != nil {
			log.Fatal(err)
		}
		defer engine.Close()
		if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
			log.Fatal(err)
		}
	}

	fmt.Println("first update:")
	update()
	src.Set("greeting", "hi")
	src.Delete("farewell")
	fmt.Println("second update:")
	update()
	// Output:
	// first update:
	//   store: create kv/main
	//   put farewell = "GOODBYE"
	//   put greeting = "HELLO"
	// second update:
	//   put greeting = "HI"
	//   delete farewell
}

// spreadsheet is a simple connector: a sheet per spec, rows in a map. Its
// Mutate receives every change of a batch, for every sheet, in one call.
type spreadsheet struct {
	mu     sync.Mutex
	sheets map[target.Key]map[target.Key]int
}

type sheetSpec struct{ Title string }

func (s *spreadsheet) PersistentKey(spec sheetSpec) target.Key {
	return target.Key("sheet/" + spec.Title)
}
func (s *spreadsheet) Describe(key target.Key) string { return "spreadsheet " + string(key) }

func (s *spreadsheet) ApplySetupChange(_ context.Context, key target.Key, prev, cur *sheetSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case cur == nil:
		delete(s.sheets, key)
	case s.sheets[key] == nil:
		s.sheets[key] = map[target.Key]int{}
		fmt.Println("created", key)
	}
	return nil
}

func (s *spreadsheet) Mutate(_ context.Context, batch []target.Mutation[sheetSpec, int]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range batch {
		for _, c := range m.Changes {
			if c.Value == nil {
				delete(s.sheets[m.Key], c.Key)
			} else {
				s.sheets[m.Key][c.Key] = *c.Value
			}
		}
		fmt.Printf("%s: %d changes\n", m.Key, len(m.Changes))
	}
	return nil
}

// A simple connector needs no handler or record: Tidemark tracks what was
// written and hands it batches of changes, a nil value meaning delete.
func ExampleCustom() {
	ctx := context.Background()
	path, cleanup := exampleStateStore()
	defer cleanup()

	words := tidemarktest.NewSource[string, string]()
	words.Set("doc1", "the quick brown fox")
	words.Set("doc2", "jumps over the lazy dog")
	sheet := &spreadsheet{sheets: map[target.Key]map[target.Key]int{}}

	update := func() {
		flow := tidemark.NewFlow("WordCounts")
		counts := tidemark.Custom(flow, sheet, sheetSpec{Title: "counts"})
		tidemark.ForEach(tidemark.AddSource(flow, "docs", words), func(_ context.Context, r *tidemark.Row, doc, text string) error {
			counts.Declare(r, target.Key(doc), len(strings.Fields(text)))
			return nil
		})
		engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: path})
		if err != nil {
			log.Fatal(err)
		}
		defer engine.Close()
		if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
			log.Fatal(err)
		}
	}

	update()
	words.Set("doc2", "jumps over the dog")
	update()
	fmt.Println(sheet.sheets["sheet/counts"])
	// Output:
	// created sheet/counts
	// sheet/counts: 2 changes
	// sheet/counts: 1 changes
	// map[doc1:4 doc2:4]
}

// A row declares a directory of its own, a directory in it, and files:
// containers nested to any depth. When the row goes, the files go first,
// then the directories, innermost first.
func ExampleNest() {
	ctx := context.Background()
	path, cleanup := exampleStateStore()
	defer cleanup()

	src := tidemarktest.NewSource[string, []string]()
	src.Set("alice", []string{"notes.txt", "plans.txt"})
	tree := tidemarktest.NewTree()

	update := func() {
		flow := tidemark.NewFlow("Homes")
		homes := tidemarktest.TreeRoot(flow, tree, "home")
		tidemark.ForEach(tidemark.AddSource(flow, "users", src),
			func(_ context.Context, r *tidemark.Row, user string, files []string) error {
				home := tidemark.Nest[tidemarktest.Node](r, homes, target.Key(user), tidemarktest.Node{Dir: true})
				docs := tidemark.Nest[tidemarktest.Node](r, home, "docs", tidemarktest.Node{Dir: true})
				for _, f := range files {
					docs.Declare(r, target.Key(f), tidemarktest.Node{Text: "by " + user})
				}
				return nil
			})
		engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: path})
		if err != nil {
			log.Fatal(err)
		}
		defer engine.Close()
		tree.ResetLog()
		// The last user going empties the listing: that deletes only once
		// confirmed, since a listing that names nothing is often a mistake.
		confirm := func(context.Context, tidemarktype.Deletions) (bool, error) { return true, nil }
		if _, err := engine.Update(ctx, tidemark.UpdateOptions{Confirm: confirm}); err != nil {
			log.Fatal(err)
		}
		fmt.Println(strings.Join(tree.Log(), "; "))
	}

	update()
	src.Delete("alice")
	update()
	// Output:
	// mkdir home; mkdir home/alice; mkdir home/alice/docs; write home/alice/docs/notes.txt; write home/alice/docs/plans.txt
	// rm home/alice/docs/notes.txt; rm home/alice/docs/plans.txt; rmdir home/alice/docs; rmdir home/alice
}
