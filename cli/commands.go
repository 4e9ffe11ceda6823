package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
)

// setupOptions are the options of setup.
type setupOptions struct {
	yes bool
}

func (r *runner) setupCommand() *cobra.Command {
	var o setupOptions
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Show the changes the targets need (create, update, drop), then apply them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, writeEngine)
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
			if ok, err := r.confirm(ctx, o.yes, "apply them"); !ok {
				return err
			}
			applied, err := s.engine.Setup(ctx)
			if errors.Is(err, tidemark.ErrFlowLocked) {
				return r.locked(s, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "applied %d setup changes\n", len(applied))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "apply without asking")
	return cmd
}

// dropOptions are the options of drop.
type dropOptions struct {
	yes bool
}

func (r *runner) dropCommand() *cobra.Command {
	var o dropOptions
	cmd := &cobra.Command{
		Use:   "drop",
		Short: "Drop every target the flow set up, with its contents, and forget the flow's state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, readEngine)
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
			if ok, err := r.confirm(ctx, o.yes, "drop them"); !ok {
				return err
			}
			changes, err := s.engine.Drop(ctx)
			if errors.Is(err, tidemark.ErrFlowLocked) {
				return r.locked(s, err)
			}
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
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "drop without asking")
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
	ok, err := r.ask(ctx, strings.ToUpper(what[:1])+what[1:])
	if err == nil && !ok {
		fmt.Fprintln(r.env.Stdout, "nothing changed")
	}
	return ok, err
}

// ask asks a yes/no question on the terminal; no is the default.
func (r *runner) ask(ctx context.Context, question string) (bool, error) {
	fmt.Fprintf(r.env.Stdout, "%s? [y/N] ", question)
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
	case <-r.env.Stop: // the first Ctrl-C answers no
		fmt.Fprintln(r.env.Stdout)
		return false, nil
	case <-ctx.Done():
		fmt.Fprintln(r.env.Stdout)
		return false, fmt.Errorf("nothing changed: %w", context.Cause(ctx))
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// evaluateOptions are the options of evaluate.
type evaluateOptions struct {
	source string
	limit  int
}

func (o *evaluateOptions) validate() error {
	return nonNegative("--limit", o.limit)
}

func (r *runner) evaluateCommand() *cobra.Command {
	var o evaluateOptions
	cmd := &cobra.Command{
		Use:   "evaluate [KEY...]",
		Short: "Run the processing function on source rows and print what it declares, as JSON lines, writing nothing",
		RunE: func(cmd *cobra.Command, keys []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return r.evaluate(cmd.Context(), &o, keys)
		},
	}
	cmd.Flags().StringVar(&o.source, "source", "", "the source to evaluate (default: every source)")
	cmd.Flags().IntVar(&o.limit, "limit", 5, "rows to evaluate per source; 0 for all")
	return cmd
}

func (r *runner) evaluate(ctx context.Context, o *evaluateOptions, keys []string) error {
	s, err := r.open(ctx, readEngine)
	if err != nil {
		return err
	}
	defer s.Close()
	source := o.source
	if len(keys) > 0 {
		if source, err = onlySource(s.flow, source); err != nil {
			return err
		}
	}
	columns := tableColumns(s.flow)
	enc := json.NewEncoder(r.env.Stdout)
	enc.SetEscapeHTML(false)
	var failed []string
	err = s.engine.Evaluate(ctx, tidemark.EvaluateOptions{Source: source, Keys: keys, Limit: o.limit}, func(ev tidemark.Evaluated) error {
		type declared struct {
			Target string `json:"target"`
			Key    any    `json:"key"`
			Value  any    `json:"value"`
		}
		row := struct {
			Source   string     `json:"source"`
			Key      any        `json:"key"`
			Exists   bool       `json:"exists"`
			Declared []declared `json:"declared"`
			Error    string     `json:"error,omitempty"`
		}{Source: ev.Source, Key: decodedKey(ev.Key), Exists: ev.Exists, Declared: []declared{}}
		for _, d := range ev.Declared {
			row.Declared = append(row.Declared, declared{Target: targetName(s.flow, d.Target), Key: decodedKey(string(d.Key)), Value: byColumn(columns[d.Target], d.Value)})
		}
		if ev.Err != nil {
			row.Error = ev.Err.Error()
			failed = append(failed, fmt.Sprintf("%s %s: %s", ev.Source, keyText(ev.Key), firstLine(row.Error)))
		}
		return enc.Encode(row)
	})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintf(r.env.Stderr, "failed: %s\n", f)
		}
		return &exitError{code: ExitRowsFailed, err: fmt.Errorf("%d rows failed to evaluate", len(failed))}
	}
	return nil
}

// decodedKey shows a JSON-encoded key as the value it encodes: a string
// key as its text, a table key's single value as that value.
func decodedKey(k string) any {
	var v any
	dec := json.NewDecoder(strings.NewReader(k))
	dec.UseNumber() // an int64 key stays exact
	if dec.Decode(&v) != nil || dec.More() {
		return k
	}
	if a, ok := v.([]any); ok && len(a) == 1 {
		return a[0]
	}
	return v
}

// keyText is a JSON-encoded key for people: a string key's bare text.
func keyText(k string) string {
	var s string
	if json.Unmarshal([]byte(k), &s) == nil {
		return s
	}
	if v, ok := decodedKey(k).(string); ok {
		return v
	}
	return k
}

// errNoSuchTarget is returned for a target name the flow does not declare.
var errNoSuchTarget = errors.New("no such target")

// nonNegative refuses a negative value of an integer flag, naming it.
func nonNegative(flag string, n int) error {
	if n < 0 {
		return fmt.Errorf("%s must not be negative, got %d", flag, n)
	}
	return nil
}

// onlySource returns the source given with --source or, without one, the
// flow's only source.
func onlySource(f *tidemark.Flow, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	names := f.SourceNames()
	if len(names) != 1 {
		return "", fmt.Errorf("the flow has %d sources: say which with --source", len(names))
	}
	return names[0], nil
}
