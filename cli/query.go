package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
)

// MaxQueryLimit bounds the results a query may ask for, in the CLI and the
// server.
const MaxQueryLimit = 1000

// queryOptions are the options of a query command.
type queryOptions struct {
	limit, offset int
	json          bool
}

func (o *queryOptions) validate() error {
	if o.limit < 1 || o.limit > MaxQueryLimit {
		return fmt.Errorf("--limit must be between 1 and %d, got %d", MaxQueryLimit, o.limit)
	}
	if o.offset < 0 || o.offset > MaxQueryOffset {
		return fmt.Errorf("--offset must be between 0 and %d, got %d", MaxQueryOffset, o.offset)
	}
	return nil
}

// MaxQueryOffset bounds the results a query may skip, in the CLI and the
// server.
const MaxQueryOffset = table.MaxSearchOffset

// TextWriter is implemented by a query result that prints itself for
// people; other results are printed record by record (see writeRecords).
type TextWriter interface {
	WriteText(w io.Writer) error
}

// addQueryCommand adds, when args name no command of root, a command for
// the query handler they name, so that `app NAME QUERY…` runs the flow's
// handler NAME: the handlers are registered on the flow alone, and the flow
// is built only once the flags are parsed.
func (r *runner) addQueryCommand(root *cobra.Command, args []string) {
	name := firstWord(root, args)
	if name == "" {
		return
	}
	for _, c := range root.Commands() {
		if c.Name() == name || c.HasAlias(name) || name == "help" || name == "completion" {
			return
		}
	}
	var o queryOptions
	cmd := &cobra.Command{
		Use:   name + " QUERY…",
		Short: "Run the flow's query handler " + name,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return r.query(cmd.Context(), root, name, tidemark.Query{Text: strings.Join(args, " "), Limit: o.limit, Offset: o.offset}, o.json)
		},
	}
	cmd.Flags().IntVar(&o.limit, "limit", 20, fmt.Sprintf("the most results to show, at most %d", MaxQueryLimit))
	cmd.Flags().IntVar(&o.offset, "offset", 0, "how many of the best results to skip, for the next page")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the results as JSON")
	root.AddCommand(cmd)
}

// firstWord returns the first argument that is neither a flag of root
// nor a flag's value: the command's name.
func firstWord(root *cobra.Command, args []string) string {
	fs := root.PersistentFlags()
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case strings.HasPrefix(a, "--"):
			if f := fs.Lookup(strings.TrimPrefix(a, "--")); f != nil && f.NoOptDefVal == "" && !strings.Contains(a, "=") {
				i++ // its value
			}
		case strings.HasPrefix(a, "-") && len(a) == 2:
			if f := fs.ShorthandLookup(a[1:]); f != nil && f.NoOptDefVal == "" {
				i++
			}
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}

func (r *runner) query(ctx context.Context, root *cobra.Command, name string, q tidemark.Query, asJSON bool) error {
	s, err := r.open(ctx, readOnly)
	if err != nil {
		return err
	}
	defer s.Close()
	if handlers := s.flow.QueryHandlers(); !slices.Contains(handlers, name) {
		var commands []string
		for _, c := range root.Commands() {
			if c.Name() != name && c.IsAvailableCommand() {
				commands = append(commands, c.Name())
			}
		}
		return fmt.Errorf("unknown command or query %q: the commands are %s; the queries %s (see `%s --help`)",
			name, strings.Join(commands, ", "), strings.Join(handlers, ", "), r.app.Name)
	}
	res, err := s.flow.Query(ctx, name, q)
	if err != nil {
		return r.queryError(err)
	}
	res, page := pageOf(res)
	if asJSON {
		enc := json.NewEncoder(r.env.Stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(res)
	}
	if tw, ok := res.(TextWriter); ok {
		err = tw.WriteText(r.env.Stdout)
	} else {
		err = writeRecords(r.env.Stdout, res)
	}
	if err == nil && page != nil {
		err = writeTotal(r.env.Stdout, page, q)
	}
	return err
}

// pageOf returns the results of a query, and its page if the handler
// returned one (see tidemark.QueryPage).
func pageOf(res any) (any, *tidemark.QueryPage) {
	switch p := res.(type) {
	case tidemark.QueryPage:
		return p.Items, &p
	case *tidemark.QueryPage:
		if p != nil {
			return p.Items, p
		}
	}
	return res, nil
}

// writeTotal says which results of how many were shown, when they were not
// all.
func writeTotal(w io.Writer, p *tidemark.QueryPage, q tidemark.Query) error {
	n := length(p.Items)
	if n == 0 || q.Offset == 0 && n >= p.Total && !p.TotalCapped {
		return nil
	}
	total := strconv.Itoa(p.Total)
	if p.TotalCapped {
		total = "more than " + total
	}
	next := ""
	if q.Offset+n < p.Total || p.TotalCapped {
		next = fmt.Sprintf(" (--offset %d for the next ones)", q.Offset+n)
	}
	_, err := fmt.Fprintf(w, "results %d to %d of %s%s\n", q.Offset+1, q.Offset+n, total, next)
	return err
}

// queryError adds a hint to a query's error where the user can act on it.
func (r *runner) queryError(err error) error {
	var nsu *table.NotSetUpError
	if errors.As(err, &nsu) {
		return &hinted{msg: fmt.Sprintf("table %s is not set up: `%s update` sets it up and fills it", nsu.Table, r.app.Name), err: err}
	}
	return err
}

// hinted is an error told in other words, for people; errors.Is and
// errors.As see the original.
type hinted struct {
	msg string
	err error
}

func (h *hinted) Error() string { return h.msg }
func (h *hinted) Unwrap() error { return h.err }

// writeRecords prints query results for people: a numbered entry per
// record, its short fields on one line, then its long text fields (a
// search hit's snippet with its matches between *, or its text). A
// table.Hit's row is shown with the hit's score and snippet.
func writeRecords(w io.Writer, res any) error {
	recs, msg := asRecords(res)
	if msg != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if len(recs) == 0 {
		_, err := fmt.Fprintln(w, "no results")
		return err
	}
	for i, rec := range recs {
		rec = flattenHit(rec)
		var short, long []string
		for _, k := range sortedNames(rec) {
			v := rec[k]
			if v == nil || k == "Score" || k == "Snippet" {
				continue
			}
			text := oneLine(v, 0)
			if len(text) > 60 {
				long = append(long, oneLine(v, 300))
				continue
			}
			short = append(short, k+": "+text)
		}
		head := fmt.Sprintf("%2d.", i+1)
		if score, ok := rec["Score"].(float64); ok {
			head += fmt.Sprintf(" [%.3f]", score)
		}
		if _, err := fmt.Fprintf(w, "%s %s\n", head, strings.Join(short, "  ")); err != nil {
			return err
		}
		if snippet, ok := rec["Snippet"].(string); ok && snippet != "" {
			long = []string{strings.NewReplacer(table.HighlightStart, "*", table.HighlightEnd, "*").Replace(oneLine(snippet, 300))}
		}
		for _, l := range long {
			if _, err := fmt.Fprintf(w, "    %s\n", l); err != nil {
				return err
			}
		}
	}
	return nil
}

// flattenHit lifts the fields of a table.Hit's Row into the record, beside
// its Score and Snippet.
func flattenHit(rec map[string]any) map[string]any {
	row, ok := rec["Row"].(map[string]any)
	if !ok {
		return rec
	}
	out := maps.Clone(row)
	out["Score"], out["Snippet"] = rec["Score"], rec["Snippet"]
	return out
}

// sortedNames returns the keys of m in order.
func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// oneLine shows a value on one line, cut at max runes when max > 0.
func oneLine(v any, max int) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case time.Time:
		s = x.Format(time.RFC3339)
	case []byte:
		s = fmt.Sprintf("%x", x)
	default:
		if b, err := json.Marshal(x); err == nil {
			s = string(b)
		} else {
			s = fmt.Sprint(x)
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); max > 0 && len(r) > max {
		s = string(r[:max]) + "…"
	}
	return s
}
