package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktype"
)

func (r *runner) lsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the flow's sources and targets, with their row counts and whether they are set up, and its queries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := r.open(ctx, readEngine)
			if err != nil {
				return err
			}
			defer s.Close()
			v, err := r.flowView(ctx, s, 0)
			if err != nil {
				return err
			}
			out := r.env.Stdout
			fmt.Fprintf(out, "flow %s\n", v.Flow)
			for _, src := range v.Sources {
				fmt.Fprintf(out, "  source %s: %d rows, %d failing\n", src.Name, src.Rows, src.Failing)
			}
			for _, t := range v.Targets {
				fmt.Fprintf(out, "  target %s (%s): %s%s\n", t.Name, t.Kind, t.State, rowsText(t.Rows))
			}
			for _, q := range v.Queries {
				fmt.Fprintf(out, "  query %s: %s %s QUERY\n", q, r.app.Name, q)
			}
			return nil
		},
	}
}

func rowsText(rows *int64) string {
	if rows == nil {
		return ""
	}
	return fmt.Sprintf(", %d rows", *rows)
}

// flowView is what show and ls say about a flow, as `show --json` prints
// it.
type flowView struct {
	Flow    string       `json:"flow"`
	Sources []sourceView `json:"sources"`
	Targets []targetView `json:"targets"`
	Queries []string     `json:"queries"`
}

type sourceView struct {
	Name            string                     `json:"name"`
	Options         map[string]string          `json:"options"`
	Rows            int64                      `json:"rows"`
	Failing         int64                      `json:"failing"`
	LastProcessedAt *time.Time                 `json:"last_processed_at"`
	LastUpdate      *tidemarktype.SourceUpdate `json:"last_update"`
	Failures        []tidemarktype.RowFailure  `json:"failures"`
}

type targetView struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	Kind string `json:"kind"`
	// State says whether the target is set up.
	State       string       `json:"state"`
	Rows        *int64       `json:"rows,omitempty"`
	Spec        any          `json:"spec"`
	Attachments []targetView `json:"attachments,omitempty"`
	// Hook is the state of the target's change hook, if it has one.
	Hook *tidemarktype.HookStatus `json:"hook,omitempty"`
}

// flowView reads the flow's status, and the row counts of its tables.
func (r *runner) flowView(ctx context.Context, s *session, failures int) (*flowView, error) {
	st, err := s.engine.Status(ctx, failures)
	if err != nil {
		return nil, err
	}
	v := &flowView{Flow: s.flow.Name(), Sources: sourceViews(st), Targets: []targetView{}, Queries: s.flow.QueryHandlers()}
	for _, t := range s.flow.Targets() {
		tv := targetView{Name: targetName(s.flow, t.Key), Key: t.Key, Kind: t.Kind, Spec: t.Spec}
		exists := false
		tv.State, exists = targetState(st, t.Key, "")
		tv.Hook = targetHook(st, t.Key)
		if spec, ok := tableSpec(t.Spec); ok && exists {
			n, err := s.db.RowCount(ctx, spec)
			switch {
			case errors.Is(err, table.ErrNotSetUp):
				tv.State = "set up, but missing from the database: dropped by hand? `drop`, then `update`, builds it again"
			case err != nil:
				return nil, err
			default:
				tv.Rows = &n
			}
		}
		for _, a := range t.Attachments {
			state, _ := targetState(st, t.Key+"#"+a.Kind+":"+a.Key, t.Key)
			tv.Attachments = append(tv.Attachments, targetView{Name: a.Key, Key: a.Key, Kind: a.Kind, State: state, Spec: a.Spec})
		}
		v.Targets = append(v.Targets, tv)
	}
	return v, nil
}

// sourceViews are the sources of a flow's status, as show says them.
func sourceViews(st *tidemarktype.Status) []sourceView {
	out := []sourceView{}
	for _, src := range st.Sources {
		sv := sourceView{Name: src.Name, Options: src.Options, Rows: src.Rows, Failing: src.Failing, LastUpdate: src.LastUpdate, Failures: src.Failures}
		if !src.LastProcessedAt.IsZero() {
			at := src.LastProcessedAt
			sv.LastProcessedAt = &at
		}
		if sv.Failures == nil {
			sv.Failures = []tidemarktype.RowFailure{}
		}
		out = append(out, sv)
	}
	return out
}

// targetState says whether a declared target, or the attachment of parent
// (when not empty), is set up.
func targetState(st *tidemarktype.Status, key, parent string) (string, bool) {
	for _, t := range st.Targets {
		if t.Key != key || t.Parent != parent {
			continue
		}
		switch {
		case t.Staged:
			return "a setup change was interrupted; the next update completes it", t.Exists
		case t.Exists:
			return "set up " + t.UpdatedAt.Local().Format(time.DateTime), true
		}
	}
	return "not set up", false
}

// targetHook returns the state of the change hook of the root target key.
func targetHook(st *tidemarktype.Status, key string) *tidemarktype.HookStatus {
	for _, t := range st.Targets {
		if t.Key == key && t.Parent == "" {
			return t.Hook
		}
	}
	return nil
}

// hookText says how a target's change hook is doing, for people.
func hookText(h *tidemarktype.HookStatus) string {
	if h.Pending == 0 {
		return "change hook: every change delivered"
	}
	s := fmt.Sprintf("change hook: %d change(s) not delivered yet, the oldest committed %s", h.Pending, h.OldestAt.Local().Format(time.DateTime))
	if !h.Attached {
		s += "; the flow no longer attaches a hook, so they wait"
	}
	if f := h.Failure; f != nil {
		s += fmt.Sprintf("\n    %d failing: %s (row %s of %s) failed %d time(s), next try %s: %s",
			h.Failing, keyText(f.Key), keyText(f.Row), f.Source, f.Attempts, f.NextAt.Local().Format(time.DateTime), firstLine(f.Error))
	}
	return s
}

// showOptions are the options of show and its subcommands.
type showOptions struct {
	failures int
	json     bool
	source   string
}

func (o *showOptions) validate() error {
	return nonNegative("--failures", o.failures)
}

func (r *runner) showCommand() *cobra.Command {
	var o showOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the flow: sources with their last update, targets with their schema and rows, and failing rows with their errors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := r.open(ctx, readEngine)
			if err != nil {
				return err
			}
			defer s.Close()
			v, err := r.flowView(ctx, s, o.failures)
			if err != nil {
				return err
			}
			if o.json {
				return r.printJSON(v)
			}
			r.printFlow(v)
			return nil
		},
	}
	cmd.PersistentFlags().BoolVar(&o.json, "json", false, "print JSON, for machines")
	cmd.Flags().IntVar(&o.failures, "failures", 20, "how many failing rows to show per source")
	row := &cobra.Command{
		Use:   "row KEY",
		Short: "Show a source row: its ordinal, fingerprints, when it was processed, its last error, and the target rows it declared, with their content",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.showRow(cmd.Context(), &o, args[0])
		},
	}
	row.Flags().StringVar(&o.source, "source", "", "the row's source (default: the flow's only source)")
	cmd.AddCommand(row, &cobra.Command{
		Use:   "target TARGET KEY",
		Short: "Show a target row (TARGET is a table's name) with its content and the source rows that declared it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.showTarget(cmd.Context(), &o, args[0], args[1])
		},
	})
	return cmd
}

func (r *runner) printJSON(v any) error {
	enc := json.NewEncoder(r.env.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (r *runner) printFlow(v *flowView) {
	out := r.env.Stdout
	fmt.Fprintf(out, "flow %s\n\nsources\n", v.Flow)
	for _, src := range v.Sources {
		last := "never"
		if src.LastProcessedAt != nil {
			last = src.LastProcessedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(out, "  %s: %d rows, %d failing, last processed %s\n", src.Name, src.Rows, src.Failing, last)
		if u := src.LastUpdate; u != nil {
			s := u.Stats
			fmt.Fprintf(out, "    last update %s, in %s: %d listed, %d fetched, %d added, %d updated, %d deleted, %d unchanged, %d failed\n",
				u.Started.Local().Format(time.DateTime), u.Finished.Sub(u.Started).Round(time.Millisecond),
				s.Listed, s.Fetched, s.Added, s.Updated, s.Deleted, s.Unchanged, s.Errors)
			if u.Error != "" {
				fmt.Fprintf(out, "    its error: %s\n", firstLine(u.Error))
			}
		}
		for _, f := range src.Failures {
			fmt.Fprintf(out, "    failing %s (%d times, last %s): %s\n", keyText(f.Key), f.Count, f.At.Local().Format(time.DateTime), firstLine(f.Message))
		}
	}
	fmt.Fprintln(out, "\ntargets")
	for _, t := range v.Targets {
		fmt.Fprintf(out, "  %s (%s): %s%s\n", t.Name, t.Kind, t.State, rowsText(t.Rows))
		if t.Hook != nil {
			fmt.Fprintf(out, "    %s\n", hookText(t.Hook))
		}
		writeSpec(out, "    ", t.Spec)
		for _, a := range t.Attachments {
			fmt.Fprintf(out, "    attachment %s %s\n", a.Kind, a.Key)
			writeSpec(out, "      ", a.Spec)
		}
	}
	if len(v.Queries) > 0 {
		fmt.Fprintln(out, "\nqueries")
		for _, q := range v.Queries {
			fmt.Fprintf(out, "  %s QUERY…\n", q)
		}
	}
}

// writeSpec prints a target's desired setup for people: a table's columns
// a line each, anything else as JSON.
func writeSpec(w io.Writer, indent string, spec any) {
	if spec == nil {
		return
	}
	if t, ok := tableSpec(spec); ok {
		for _, c := range t.Columns {
			var notes []string
			for i, pk := range t.PrimaryKey {
				if pk == c.Name {
					notes = append(notes, "primary key")
					if len(t.PrimaryKey) > 1 {
						notes[len(notes)-1] += fmt.Sprintf(" (%d of %d)", i+1, len(t.PrimaryKey))
					}
				}
			}
			if c.Nullable {
				notes = append(notes, "null")
			} else {
				notes = append(notes, "not null")
			}
			fmt.Fprintf(w, "%scolumn %-14s %s, %s\n", indent, c.Name, c.Type, strings.Join(notes, ", "))
		}
		return
	}
	b, err := json.Marshal(spec)
	if err != nil {
		fmt.Fprintf(w, "%s%v\n", indent, spec)
		return
	}
	fmt.Fprintf(w, "%s%s\n", indent, b)
}

// rowView is what `show row` says of a source row.
type rowView struct {
	Source             string      `json:"source"`
	Key                any         `json:"key"`
	Ordinal            *int64      `json:"ordinal"`
	ContentFingerprint string      `json:"content_fingerprint"`
	LogicFingerprint   string      `json:"logic_fingerprint"`
	LogicCurrent       bool        `json:"logic_current"`
	ProcessedAt        *time.Time  `json:"processed_at"`
	Error              *string     `json:"error"`
	Staged             bool        `json:"staged"`
	States             []stateView `json:"states"`
}

type stateView struct {
	Target string `json:"target"`
	Key    any    `json:"key"`
	// Containers and Attachment place a state in containers rows declare.
	Containers []string `json:"containers,omitempty"`
	Attachment string   `json:"attachment,omitempty"`
	// Content is a table row's current content, by column; nil when the
	// target is not a table or the row is not there, or when
	// ContentOmitted says it was not read: past the first
	// maxContentLookups table rows of a source row.
	Content        map[string]any `json:"content"`
	ContentOmitted bool           `json:"content_omitted,omitempty"`
	// TableMissing says the table is not in the database: the content
	// could not be read.
	TableMissing bool `json:"table_missing,omitempty"`
	// KeyArg is the state's key as show target and the server's target
	// pages take it (with Target, the target's name); Table says the
	// target is a table (not in JSON: the server links with them).
	KeyArg string `json:"-"`
	Table  bool   `json:"-"`
}

// maxContentLookups bounds the rows of a table whose content a source
// row's view reads: a thread of thousands of comments is shown with the
// first ones' content, and the others' keys.
const maxContentLookups = 500

// rowView reads what is kept for a source row, with the current content
// of the table rows it declared. key is as Engine.Row takes it.
func (s *session) rowView(ctx context.Context, source, key string) (*rowView, error) {
	st, err := s.engine.Row(ctx, source, key)
	if err != nil {
		return nil, err
	}
	v := &rowView{Source: st.Source, Key: decodedKey(st.Key), Ordinal: st.Ordinal, ContentFingerprint: hex.EncodeToString(st.ContentFingerprint),
		LogicFingerprint: hex.EncodeToString(st.LogicFingerprint), LogicCurrent: st.LogicCurrent, Staged: st.Staged, States: []stateView{}}
	if !st.ProcessedAt.IsZero() {
		at := st.ProcessedAt
		v.ProcessedAt = &at
	}
	if st.Failure != nil {
		v.Error = &st.Failure.Message
	}
	specs := tableSpecs(s.flow)
	names := make(map[string]string) // target key → name, asked once each
	// The table rows' content, read a target at a time in one statement.
	want := make(map[string][]int) // target key → indexes in v.States
	for _, d := range st.States {
		name, ok := names[d.Target]
		if !ok {
			name = targetName(s.flow, d.Target)
			names[d.Target] = name
		}
		sv := stateView{Target: name, Key: decodedKey(d.Key), Attachment: d.Attachment, KeyArg: targetKeyArg(d.Key)}
		for _, c := range d.Containers {
			sv.Containers = append(sv.Containers, string(c))
		}
		if _, ok := specs[d.Target]; ok && len(d.Containers) == 0 && d.Attachment == "" {
			sv.Table = true
			if len(want[d.Target]) < maxContentLookups {
				want[d.Target] = append(want[d.Target], len(v.States))
			} else {
				sv.ContentOmitted = true
			}
		}
		if len(d.Containers) > 0 || d.Attachment != "" {
			sv.KeyArg = d.Nested
		}
		v.States = append(v.States, sv)
	}
	for key, idx := range want {
		keys := make([]target.Key, len(idx))
		for i, j := range idx {
			keys[i] = target.Key(st.States[j].Key)
		}
		rows, err := s.db.LookupMany(ctx, specs[key], keys)
		if errors.Is(err, table.ErrNotSetUp) {
			for _, j := range idx {
				v.States[j].TableMissing = true
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		for i, j := range idx {
			v.States[j].Content = rows[i]
		}
	}
	return v, nil
}

// targetKeyArg is a target state's key as show target and the server's
// target pages take it: a table row's single-column key as its bare
// value, a key of several columns as its JSON array, any other key as it
// is.
func targetKeyArg(k string) string {
	switch v := decodedKey(k).(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return k
}

func (r *runner) showRow(ctx context.Context, o *showOptions, key string) error {
	s, err := r.open(ctx, readEngine)
	if err != nil {
		return err
	}
	defer s.Close()
	source, err := onlySource(s.flow, o.source)
	if err != nil {
		return err
	}
	v, err := s.rowView(ctx, source, key)
	if err != nil {
		return err
	}
	if o.json {
		return r.printJSON(v)
	}
	out := r.env.Stdout
	fmt.Fprintf(out, "source %s, row %v\n", v.Source, v.Key)
	if v.Ordinal != nil {
		fmt.Fprintf(out, "  ordinal        %d\n", *v.Ordinal)
	}
	fmt.Fprintf(out, "  content        %s\n", v.ContentFingerprint)
	if v.ProcessedAt != nil {
		logic := "the flow's current logic"
		if !v.LogicCurrent {
			logic = "an older logic: the next update processes it again"
		}
		fmt.Fprintf(out, "  logic          %s (%s)\n", v.LogicFingerprint, logic)
		fmt.Fprintf(out, "  processed at   %s\n", v.ProcessedAt.Local().Format(time.DateTime))
	} else {
		fmt.Fprintln(out, "  never processed: the next update tries it again")
	}
	if v.Error != nil {
		fmt.Fprintf(out, "  last error     %s\n", *v.Error)
	}
	if v.Staged {
		fmt.Fprintln(out, "  staged: an update did not finish with it; the next one redoes it")
	}
	fmt.Fprintf(out, "  %d target states\n", len(v.States))
	for _, sv := range v.States {
		fmt.Fprintf(out, "    %s %v\n", sv.Target, sv.Key)
		writeContent(out, "      ", sv.Content)
	}
	return nil
}

// writeContent prints a table row's columns, a line each.
func writeContent(w io.Writer, indent string, content map[string]any) {
	for _, name := range sortedNames(content) {
		fmt.Fprintf(w, "%s%s: %s\n", indent, name, oneLine(content[name], 200))
	}
}

// targetRowView is what `show target` says of a target row.
type targetRowView struct {
	Target  string         `json:"target"`
	Key     any            `json:"key"`
	Content map[string]any `json:"content"`
	// TableMissing says the table is not in the database: the content
	// could not be read.
	TableMissing bool      `json:"table_missing,omitempty"`
	Declarers    []refView `json:"declarers"`
}

// refView names a source row: its source, and its key decoded.
type refView struct {
	Source string `json:"source"`
	Key    any    `json:"key"`
	// KeyArg is the key as show row and the row's page take it.
	KeyArg string `json:"-"`
}

func (r *runner) showTarget(ctx context.Context, o *showOptions, name, key string) error {
	s, err := r.open(ctx, readEngine)
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.targetRowView(ctx, name, key)
	if err != nil {
		return err
	}
	refs := v.Declarers
	if o.json {
		return r.printJSON(v)
	}
	out := r.env.Stdout
	fmt.Fprintf(out, "target %s, row %v\n", v.Target, v.Key)
	writeContent(out, "  ", v.Content)
	fmt.Fprintf(out, "declared by %d source rows\n", len(refs))
	for _, ref := range refs {
		fmt.Fprintf(out, "  source %s, row %s   (%s show row %s)\n", ref.Source, ref.KeyArg, r.app.Name, ref.KeyArg)
	}
	return nil
}

// findTarget returns the flow's target that name names: a table's name or
// a target's key.
func findTarget(f *tidemark.Flow, name string) (*tidemark.TargetInfo, error) {
	var names []string
	for _, t := range f.Targets() {
		if t.Key == name || targetName(f, t.Key) == name {
			return &t, nil
		}
		names = append(names, targetName(f, t.Key))
	}
	return nil, fmt.Errorf("%w %q: the flow's targets are %s", errNoSuchTarget, name, strings.Join(names, ", "))
}

// targetRowView reads a target state, by its target's name and its key as
// show target takes them, with the source rows that declare it and, for a
// table row, its current content.
func (s *session) targetRowView(ctx context.Context, name, key string) (*targetRowView, error) {
	info, err := findTarget(s.flow, name)
	if err != nil {
		return nil, err
	}
	if !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
		return nil, badRequestf("%q is not a key of %s: keys are valid UTF-8 without NUL", key, name)
	}
	k := target.Key(key)
	spec, isTable := tableSpec(info.Spec)
	if isTable {
		if k, err = tableKey(spec, key); err != nil {
			return nil, err
		}
	}
	refs, err := s.engine.Declarers(ctx, info.Key, k)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, key, err)
	}
	v := &targetRowView{Target: targetName(s.flow, info.Key), Key: decodedKey(string(k)), Declarers: make([]refView, len(refs))}
	for i, ref := range refs {
		v.Declarers[i] = refView{Source: ref.Source, Key: decodedKey(ref.Key), KeyArg: keyText(ref.Key)}
	}
	if isTable {
		v.Content, _, err = s.db.Lookup(ctx, spec, k)
		if errors.Is(err, table.ErrNotSetUp) {
			v.TableMissing = true
		} else if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// tableKey encodes a key given on the command line as the table's target
// keys are: a JSON array of the primary key's values. A single-column key
// is given as its bare value, a key of several columns as that JSON array.
func tableKey(spec table.Spec, arg string) (target.Key, error) {
	if len(spec.PrimaryKey) > 1 && strings.HasPrefix(arg, "[") {
		k, err := spec.NormalizeKey(target.Key(arg))
		if err != nil {
			return "", &badRequest{err.Error()}
		}
		return k, nil
	}
	if len(spec.PrimaryKey) != 1 {
		return "", badRequestf("table %s has a primary key of %d columns (%s): give the key as a JSON array", spec.Table, len(spec.PrimaryKey), strings.Join(spec.PrimaryKey, ", "))
	}
	c, _ := spec.Column(spec.PrimaryKey[0])
	var v any = arg
	var quoted string
	if c.Kind == table.KindText && strings.HasPrefix(arg, `"`) && json.Unmarshal([]byte(arg), &quoted) == nil {
		v = quoted // the key as show row prints a JSON key: "40000001"
	}
	if c.Kind == table.KindInt || c.Kind == table.KindFloat {
		var n json.Number
		if err := json.Unmarshal([]byte(arg), &n); err != nil {
			return "", badRequestf("table %s: its key %s is a number, got %q", spec.Table, c.Name, arg)
		}
		v = n
	}
	b, err := json.Marshal([]any{v})
	if err != nil {
		return "", err
	}
	return target.Key(b), nil
}

// tableSpec returns a target's spec as a table's, if it is one.
func tableSpec(spec any) (table.Spec, bool) {
	switch s := spec.(type) {
	case table.Spec:
		return s, true
	case *table.Spec:
		if s != nil {
			return *s, true
		}
	}
	return table.Spec{}, false
}

// tableSpecs returns the specs of the flow's table targets, by target key.
func tableSpecs(f *tidemark.Flow) map[string]table.Spec {
	out := make(map[string]table.Spec)
	for _, t := range f.Targets() {
		if s, ok := tableSpec(t.Spec); ok {
			out[t.Key] = s
		}
	}
	return out
}

// tableColumns returns the column names of the flow's table targets, by
// target key.
func tableColumns(f *tidemark.Flow) map[string][]string {
	out := make(map[string][]string)
	for key, s := range tableSpecs(f) {
		out[key] = s.ColumnNames()
	}
	return out
}

// targetName is how people name a target: a table by its name, anything
// else by its key.
func targetName(f *tidemark.Flow, key string) string {
	for _, t := range f.Targets() {
		if t.Key == key {
			if s, ok := tableSpec(t.Spec); ok {
				return s.Table
			}
		}
	}
	return key
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
