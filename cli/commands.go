package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktype"
)

func (r *runner) setupCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Show the changes the targets need (create, update, drop), then apply them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, true)
			if err != nil {
				return err
			}
			defer s.Close()
			plan, err := s.engine.Plan(ctx)
			if err != nil {
				return err
			}
			out := r.env.Stdout
			if len(plan) == 0 {
				fmt.Fprintln(out, "the targets are set up; nothing to change")
				return nil
			}
			fmt.Fprintf(out, "flow %s needs %d setup changes:\n", s.flow.Name(), len(plan))
			for _, c := range plan {
				fmt.Fprintf(out, "  %s\n", c)
			}
			if ok, err := r.confirm(ctx, yes, "apply them"); !ok {
				return err
			}
			applied, err := s.engine.Setup(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "applied %d setup changes\n", len(applied))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "apply without asking")
	return cmd
}

func (r *runner) dropCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "drop",
		Short: "Drop every target the flow set up, with its contents, and forget the flow's state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, true)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.engine.Status(ctx, 0)
			if err != nil {
				return err
			}
			out := r.env.Stdout
			var existing []string
			for _, t := range st.Targets {
				if t.Exists && !t.Attachment {
					existing = append(existing, t.Key)
				}
			}
			fmt.Fprintf(out, "flow %s: dropping %d targets with their contents", s.flow.Name(), len(existing))
			if len(existing) > 0 {
				fmt.Fprintf(out, ": %s", strings.Join(existing, ", "))
			}
			fmt.Fprintln(out, ", and the flow's state")
			if ok, err := r.confirm(ctx, yes, "drop them"); !ok {
				return err
			}
			changes, err := s.engine.Drop(ctx)
			if err != nil {
				return err
			}
			for _, c := range changes {
				fmt.Fprintf(out, "  %s\n", c)
			}
			fmt.Fprintf(out, "dropped flow %s\n", s.flow.Name())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "drop without asking")
	return cmd
}

// confirm asks before a change: with --yes it goes ahead; on a terminal it
// asks; otherwise it refuses with an error saying to pass --yes.
func (r *runner) confirm(ctx context.Context, yes bool, what string) (bool, error) {
	if yes {
		return true, nil
	}
	if !r.env.Terminal {
		return false, fmt.Errorf("not a terminal, so not asking: pass --yes to %s", what)
	}
	fmt.Fprintf(r.env.Stdout, "%s? [y/N] ", strings.ToUpper(what[:1])+what[1:])
	type answer struct {
		line string
		err  error
	}
	answers := make(chan answer, 1)
	go func() { // left blocked on stdin if interrupted; the process is ending
		line, err := bufio.NewReader(r.env.Stdin).ReadString('\n')
		answers <- answer{line, err}
	}()
	var line string
	select {
	case a := <-answers:
		if a.err != nil && a.err != io.EOF {
			return false, a.err
		}
		line = a.line
	case <-ctx.Done():
		fmt.Fprintln(r.env.Stdout)
		return false, fmt.Errorf("nothing changed: %w", context.Cause(ctx))
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
		return true, nil
	}
	fmt.Fprintln(r.env.Stdout, "nothing changed")
	return false, nil
}

func (r *runner) lsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the flow's sources and targets, with their row counts and whether they are set up",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, true)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.engine.Status(ctx, 0)
			if err != nil {
				return err
			}
			out := r.env.Stdout
			fmt.Fprintf(out, "flow %s\n", s.flow.Name())
			for _, src := range st.Sources {
				fmt.Fprintf(out, "  source %s: %d rows, %d failing\n", src.Name, src.Rows, src.Failing)
			}
			for _, t := range s.flow.Targets() {
				fmt.Fprintf(out, "  target %s (%s): %s\n", t.Key, t.Kind, targetState(st, t.Key))
			}
			return nil
		},
	}
}

// targetState says whether a declared target is set up.
func targetState(st *tidemarktype.Status, key string) string {
	for _, t := range st.Targets {
		if t.Key != key || t.Attachment {
			continue
		}
		switch {
		case t.Staged:
			return "a setup change was interrupted; the next update completes it"
		case t.Exists:
			return "set up " + t.UpdatedAt.Local().Format(time.DateTime)
		}
	}
	return "not set up"
}

func (r *runner) showCommand() *cobra.Command {
	var failures int
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the flow: sources with their state, targets with their schema, and failing rows with their errors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, true)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.engine.Status(ctx, failures)
			if err != nil {
				return err
			}
			out := r.env.Stdout
			fmt.Fprintf(out, "flow %s\n\nsources\n", s.flow.Name())
			for _, src := range st.Sources {
				last := "never"
				if !src.LastProcessedAt.IsZero() {
					last = src.LastProcessedAt.Local().Format(time.DateTime)
				}
				fmt.Fprintf(out, "  %s: %d rows, %d failing, last processed %s\n", src.Name, src.Rows, src.Failing, last)
				for _, f := range src.Failures {
					fmt.Fprintf(out, "    failing %s (%d times, last %s): %s\n", f.Key, f.Count, f.At.Local().Format(time.DateTime), firstLine(f.Message))
				}
			}
			fmt.Fprintln(out, "\ntargets")
			for _, t := range s.flow.Targets() {
				fmt.Fprintf(out, "  %s (%s): %s\n", t.Key, t.Kind, targetState(st, t.Key))
				writeSpec(out, "    ", t.Spec)
				for _, a := range t.Attachments {
					fmt.Fprintf(out, "    attachment %s %s\n", a.Kind, a.Key)
					writeSpec(out, "      ", a.Spec)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&failures, "failures", 20, "how many failing rows to show per source")
	return cmd
}

// writeSpec prints a target's desired setup as indented JSON.
func writeSpec(w io.Writer, indent string, spec any) {
	if spec == nil {
		return
	}
	b, err := json.MarshalIndent(spec, indent, "  ")
	if err != nil {
		fmt.Fprintf(w, "%s%v\n", indent, spec)
		return
	}
	fmt.Fprintf(w, "%s%s\n", indent, b)
}

func (r *runner) evaluateCommand() *cobra.Command {
	var (
		source string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "evaluate [KEY...]",
		Short: "Run the processing function on source rows and print what it declares, as JSON lines, writing nothing",
		RunE: func(cmd *cobra.Command, keys []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit must not be negative, got %d", limit)
			}
			ctx := cmd.Context()
			s, err := r.open(ctx, true)
			if err != nil {
				return err
			}
			defer s.Close()
			if len(keys) > 0 && source == "" {
				names := s.flow.SourceNames()
				if len(names) != 1 {
					return fmt.Errorf("the flow has %d sources: say which with --source", len(names))
				}
				source = names[0]
			}
			columns := tableColumns(s.flow)
			enc := json.NewEncoder(r.env.Stdout)
			enc.SetEscapeHTML(false)
			return s.engine.Evaluate(ctx, tidemark.EvaluateOptions{Source: source, Keys: keys, Limit: limit}, func(ev tidemark.Evaluated) error {
				type declared struct {
					Target string `json:"target"`
					Key    string `json:"key"`
					Value  any    `json:"value"`
				}
				row := struct {
					Source   string     `json:"source"`
					Key      string     `json:"key"`
					Exists   bool       `json:"exists"`
					Declared []declared `json:"declared"`
					Error    string     `json:"error,omitempty"`
				}{Source: ev.Source, Key: ev.Key, Exists: ev.Exists, Declared: []declared{}}
				for _, d := range ev.Declared {
					row.Declared = append(row.Declared, declared{Target: d.Target, Key: string(d.Key), Value: byColumn(columns[d.Target], d.Value)})
				}
				if ev.Err != nil {
					row.Error = ev.Err.Error()
				}
				return enc.Encode(row)
			})
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "the source to evaluate (default: every source)")
	cmd.Flags().IntVar(&limit, "limit", 5, "rows to evaluate per source; 0 for all")
	return cmd
}

// TextWriter is implemented by a query result that prints itself for
// people; results that do not are printed as indented JSON.
type TextWriter interface {
	WriteText(w io.Writer) error
}

func (r *runner) addQueryCommands(root *cobra.Command) {
	for _, name := range slices.Sorted(maps.Keys(r.app.Queries)) {
		var (
			limit  int
			asJSON bool
		)
		cmd := &cobra.Command{
			Use:   name + " QUERY",
			Short: r.app.Queries[name],
			Args:  cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if limit < 1 {
					return fmt.Errorf("--limit must be at least 1, got %d", limit)
				}
				return r.query(cmd.Context(), name, tidemark.Query{Text: strings.Join(args, " "), Limit: limit}, asJSON)
			},
		}
		cmd.Flags().IntVar(&limit, "limit", 20, "the most results to show")
		cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
		root.AddCommand(cmd)
	}
}

func (r *runner) query(ctx context.Context, name string, q tidemark.Query, asJSON bool) error {
	s, err := r.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := s.flow.Query(ctx, name, q)
	if err != nil {
		return err
	}
	if tw, ok := res.(TextWriter); ok && !asJSON {
		return tw.WriteText(r.env.Stdout)
	}
	enc := json.NewEncoder(r.env.Stdout)
	enc.SetEscapeHTML(false)
	if !asJSON {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(res)
}

// tableColumns returns the column names of the flow's table targets, by
// target key.
func tableColumns(f *tidemark.Flow) map[string][]string {
	out := make(map[string][]string)
	for _, t := range f.Targets() {
		switch spec := t.Spec.(type) {
		case table.Spec:
			out[t.Key] = spec.ColumnNames()
		case *table.Spec:
			out[t.Key] = spec.ColumnNames()
		}
	}
	return out
}

// byColumn shows a table row's values as an object keyed by column name.
func byColumn(columns []string, v any) any {
	rv := reflect.ValueOf(v)
	if len(columns) == 0 || rv.Kind() != reflect.Slice || rv.Len() != len(columns) {
		return v
	}
	m := make(map[string]any, len(columns))
	for i, c := range columns {
		m[c] = rv.Index(i).Interface()
	}
	return m
}
