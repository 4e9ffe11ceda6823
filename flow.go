package tidemark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/target"
)

// Flow is a named app: its sources, a processing function per source row,
// and the targets the function declares states in. Build it once at start
// with NewFlow, AddSource, ForEach and the target constructors, then Open
// it. Mistakes made while building it are reported by Open.
type Flow struct {
	name         string
	logicVersion string

	mu         sync.Mutex
	errs       []error
	sources    []*sourceDef
	roots      []*engine.Root
	handlers   map[string]target.Erased
	connectors target.ConnectorTargets
	queries    map[string]QueryFunc
	// opened is set once an engine was opened on the flow: its targets are
	// fixed from then on.
	opened bool
}

// FlowOption configures a flow.
type FlowOption func(*Flow)

// LogicVersion sets the version of the flow's processing logic. Change it
// whenever the processing function changes what it declares: every row is
// then processed again on the next update.
func LogicVersion(v string) FlowOption {
	return func(f *Flow) { f.logicVersion = v }
}

// NewFlow returns an empty flow named name. The name keys everything
// Tidemark remembers about the flow; renaming it starts afresh.
func NewFlow(name string, opts ...FlowOption) *Flow {
	f := &Flow{name: name, handlers: make(map[string]target.Erased), queries: make(map[string]QueryFunc)}
	if name == "" {
		f.errs = append(f.errs, errors.New("tidemark: a flow needs a name"))
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Name returns the flow's name.
func (f *Flow) Name() string { return f.name }

func (f *Flow) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

// AddError records a mistake made while building the flow, such as a row
// type that cannot be a table; Open reports it. Target and source packages
// call it from their constructors, which return no error.
func (f *Flow) AddError(err error) {
	if err != nil {
		f.fail(err)
	}
}

// sourceDef is a source added to a flow, with its key and value types
// erased for the engine.
type sourceDef struct {
	name            string
	maxInFlight     int
	refreshInterval time.Duration
	impl            erasedSource
}

// erasedSource is the engine's view of a typed source; process is set by
// ForEach.
type erasedSource interface {
	engine.SourceImpl
	hasProcess() bool
	parseKey(arg string) (string, error)
	// source is the source as the user gave it.
	source() any
}

// SourceOption configures a source added to a flow.
type SourceOption func(*sourceDef)

// RefreshInterval sets how often live mode lists the source again.
func RefreshInterval(d time.Duration) SourceOption {
	return func(s *sourceDef) { s.refreshInterval = d }
}

// MaxInFlight bounds how many of the source's rows are fetched and
// processed at once (default 16).
func MaxInFlight(n int) SourceOption {
	return func(s *sourceDef) { s.maxInFlight = n }
}

// SourceHandle is a source added to a flow; pass it to ForEach.
type SourceHandle[K comparable, V any] struct {
	flow *Flow
	def  *sourceDef
	src  *typedSource[K, V]
}

// AddSource adds src to the flow under name, which keys what Tidemark
// remembers of its rows.
func AddSource[K comparable, V any](f *Flow, name string, src Source[K, V], opts ...SourceOption) *SourceHandle[K, V] {
	ts := &typedSource[K, V]{src: src, flow: f, name: name}
	def := &sourceDef{name: name, maxInFlight: 16, impl: ts}
	for _, o := range opts {
		o(def)
	}
	switch {
	case src == nil:
		f.fail(fmt.Errorf("tidemark: source %q is nil", name))
	case name == "":
		f.fail(errors.New("tidemark: a source needs a name"))
	case def.maxInFlight < 1:
		f.fail(fmt.Errorf("tidemark: source %s: MaxInFlight must be at least 1, got %d", name, def.maxInFlight))
	case def.refreshInterval < 0:
		f.fail(fmt.Errorf("tidemark: source %s: RefreshInterval must not be negative, got %s", name, def.refreshInterval))
	}
	f.mu.Lock()
	f.sources = append(f.sources, def)
	f.mu.Unlock()
	return &SourceHandle[K, V]{flow: f, def: def, src: ts}
}

// ProcessFunc is a flow's processing function for one source row: plain Go
// that declares the target states the row should produce, with the
// Declare methods of the flow's targets. It is called from many goroutines
// at once. An error (or a panic) fails the row, which keeps its previous
// target states and is retried on the next update.
type ProcessFunc[K comparable, V any] func(ctx context.Context, r *Row, key K, value V) error

// ForEach sets the processing function of a source's rows.
func ForEach[K comparable, V any](s *SourceHandle[K, V], fn ProcessFunc[K, V]) {
	if fn == nil {
		s.flow.fail(fmt.Errorf("tidemark: source %s: nil processing function", s.def.name))
		return
	}
	if s.src.process != nil {
		s.flow.fail(fmt.Errorf("tidemark: source %s: ForEach called twice", s.def.name))
		return
	}
	s.src.process = fn
}

// Row collects the target states declared while processing one source row.
// It is only valid during the call of the processing function.
type Row struct {
	decls []engine.Decl
	// errs are mistakes made declaring, which fail the row.
	errs []error
}

// typedSource adapts a Source[K, V] and its processing function to the
// engine, encoding keys as JSON.
type typedSource[K comparable, V any] struct {
	flow    *Flow
	name    string
	src     Source[K, V]
	process ProcessFunc[K, V]
}

func (t *typedSource[K, V]) hasProcess() bool { return t.process != nil }

func (t *typedSource[K, V]) source() any { return t.src }

// encodeKey encodes a source key as JSON, the form the state store keeps.
// A key that does not come back equal from its encoding (a string that is
// not valid UTF-8, a float NaN) is refused: two such keys could collide.
func encodeKey[K comparable](k K) (string, error) {
	b, err := json.Marshal(k)
	if err != nil {
		return "", fmt.Errorf("encoding key %#v: %w", k, err)
	}
	back, err := decodeKey[K](string(b))
	if err != nil || back != k {
		return "", fmt.Errorf("key %#v does not survive its JSON encoding %s; keys must encode losslessly (strings must be valid UTF-8)", k, b)
	}
	return string(b), nil
}

func decodeKey[K comparable](s string) (K, error) {
	var k K
	if err := json.Unmarshal([]byte(s), &k); err != nil {
		return k, fmt.Errorf("decoding key %s: %w", s, err)
	}
	return k, nil
}

func (t *typedSource[K, V]) List(ctx context.Context) iter.Seq2[engine.Listed, error] {
	return func(yield func(engine.Listed, error) bool) {
		for l, err := range t.src.List(ctx) {
			if err != nil {
				yield(engine.Listed{}, err)
				return
			}
			key, err := encodeKey(l.Key)
			if err != nil {
				// This row fails; the listing goes on.
				if !yield(engine.Listed{Key: fmt.Sprintf("%#v", l.Key), Invalid: err}, nil) {
					return
				}
				continue
			}
			el := engine.Listed{Key: key, Fingerprint: l.Fingerprint}
			if l.Ordinal != NoOrdinal {
				el.Ordinal, el.HasOrdinal = int64(l.Ordinal), true
			}
			if !yield(el, nil) {
				return
			}
		}
	}
}

func (t *typedSource[K, V]) Get(ctx context.Context, key string) (engine.Fetched, error) {
	k, err := decodeKey[K](key)
	if err != nil {
		return engine.Fetched{}, err
	}
	f, err := t.src.Get(ctx, k)
	if err != nil {
		return engine.Fetched{}, err
	}
	ef := engine.Fetched{Exists: f.Exists, Value: f.Value, Fingerprint: f.Fingerprint}
	if f.Ordinal != NoOrdinal && f.Ordinal != 0 {
		ef.Ordinal, ef.HasOrdinal = int64(f.Ordinal), true
	}
	return ef, nil
}

func (t *typedSource[K, V]) Process(ctx context.Context, key string, value any) ([]engine.Decl, error) {
	k, err := decodeKey[K](key)
	if err != nil {
		return nil, err
	}
	v, ok := value.(V)
	if !ok {
		return nil, fmt.Errorf("source %s returned a %T, want %s", t.name, value, reflect.TypeFor[V]())
	}
	r := &Row{}
	if err := t.process(ctx, r, k, v); err != nil {
		return nil, err
	}
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return r.decls, nil
}

// Watch runs the source's change stream, if it has one, calling notify
// with each changed key encoded; ok is false for a source without one. It
// implements engine.Watching.
func (t *typedSource[K, V]) Watch(ctx context.Context, notify func(engine.Listed) error) (ok bool, err error) {
	w, ok := t.src.(Watcher[K])
	if !ok {
		return false, nil
	}
	return true, w.Watch(ctx, func(c Change[K]) error {
		key, err := encodeKey(c.Key)
		if err != nil {
			return nil // such a key fails its row when listed
		}
		l := engine.Listed{Key: key}
		if c.Ordinal != NoOrdinal {
			l.Ordinal, l.HasOrdinal = int64(c.Ordinal), true
		}
		return notify(l)
	})
}

// parseKey reads a key given on a command line: the key's JSON encoding,
// or for a string key the bare text.
func (t *typedSource[K, V]) parseKey(arg string) (string, error) {
	if !utf8.ValidString(arg) {
		// JSON would replace the invalid bytes, naming another key.
		return "", fmt.Errorf("source %s: %q %w: not valid UTF-8", t.name, arg, ErrBadKey)
	}
	// JSON's null decodes to any type's zero value: as a key, it is text.
	if k, err := decodeKey[K](arg); err == nil && arg != "null" {
		return encodeKey(k)
	}
	b, err := json.Marshal(arg)
	if err != nil {
		return "", err
	}
	k, err := decodeKey[K](string(b))
	if err != nil {
		return "", fmt.Errorf("source %s: %q %w: %w", t.name, arg, ErrBadKey, err)
	}
	return encodeKey(k)
}

func (t *typedSource[K, V]) ProvidesOrdinal() bool {
	if p, ok := t.src.(OrdinalProvider); ok {
		return p.ProvidesOrdinal()
	}
	return true
}

// Target is where a flow declares target states of type V: the children of
// a container such as a table or a directory. Get one from a target
// constructor (a built-in target, Custom, or DeclareContainer).
//
// A Target got from Nest is a container declared by one source row, valid
// while that row is processed: only that row declares in it.
type Target[V any] struct {
	flow  *Flow
	index int
	root  *engine.Root
	// row and path, for a row container, are the row that declared it and
	// the keys of the containers from the root's child down to it.
	row  *Row
	path []target.Key
}

// Declare declares, while processing r, that the state at key should exist
// with value v. Declaring the same key twice for one row fails the row, and
// so does declaring in a container that another row declared.
func (t *Target[V]) Declare(r *Row, key target.Key, v V) {
	if !t.in(r) {
		return
	}
	r.decls = append(r.decls, engine.Decl{Root: t.index, Path: t.path, Key: key, Value: &v})
}

// in reports whether r may declare in t, failing r when it may not.
func (t *Target[V]) in(r *Row) bool {
	if t.row != nil && t.row != r {
		r.errs = append(r.errs, fmt.Errorf("tidemark: declared in container %q of target %s, which another source row declared", t.path[len(t.path)-1], t.root.Key))
		return false
	}
	return true
}

// Nest declares, while processing r, a container at key in the target t,
// with spec as its value, and returns where to declare its children, of
// type C: a directory per source row, a table per tenant. The children may
// be containers too, to any depth. t's child handler must implement
// target.Nester, whose Children gives the handler of the new container's
// children.
//
// The container is a target state like any other: it lives while some
// source row declares it. When none does, its children are deleted first,
// then its attachments (see Attach), then the container itself; it is
// created before its attachments and children are written. Declaring the
// same key in t twice for one row fails the row.
func Nest[C, S any](r *Row, t *Target[S], key target.Key, spec S) *Target[C] {
	t.Declare(r, key, spec)
	return &Target[C]{flow: t.flow, index: t.index, root: t.root, row: r, path: append(slices.Clone(t.path), key)}
}

// Key returns the target's persistent key: for a container declared by a
// row (see Nest), the key of the root target it is in.
func (t *Target[V]) Key() target.Key { return t.root.Key }

// Flow returns the flow the target belongs to.
func (t *Target[V]) Flow() *Flow { return t.flow }

func (f *Flow) addRoot(r *engine.Root) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, existing := range f.roots {
		if existing.Key == r.Key {
			f.errs = append(f.errs, fmt.Errorf("tidemark: target %s declared twice", r.Key))
		}
	}
	f.roots = append(f.roots, r)
	if _, ok := f.handlers[r.Kind]; !ok {
		f.handlers[r.Kind] = r.Handler
	}
	return len(f.roots) - 1
}

// DeclareContainer declares a container target state of the flow itself —
// a table, a directory — reconciled by h against spec once per update before
// any row is processed. h's sink must return a child handler of values of
// type C, whose states the processing function declares in the returned
// Target. kind names h, so that Tidemark can tear the container down with a
// handler of the same kind after the flow stops declaring it.
func DeclareContainer[S, C any](f *Flow, kind string, key target.Key, h target.Handler[S], spec S) *Target[C] {
	r := &engine.Root{Kind: kind, Key: key, Handler: target.Erase(h), Spec: &spec, Container: true, ChildType: reflect.TypeFor[C]()}
	if h == nil || kind == "" || key == "" {
		f.fail(fmt.Errorf("tidemark: DeclareContainer needs a handler, a kind and a key (key %q, kind %q)", key, kind))
	}
	return &Target[C]{flow: f, index: f.addRoot(r), root: r}
}

// DeclareState declares a single target state of the flow itself, with no
// children (a configuration file, say), reconciled by h once per update.
func DeclareState[S any](f *Flow, kind string, key target.Key, h target.Handler[S], spec S) {
	if h == nil || kind == "" || key == "" {
		f.fail(fmt.Errorf("tidemark: DeclareState needs a handler, a kind and a key (key %q, kind %q)", key, kind))
	}
	f.addRoot(&engine.Root{Kind: kind, Key: key, Handler: target.Erase(h), Spec: &spec})
}

// Attach declares an attachment of the container t: auxiliary state kept
// apart from its children, such as an index or a SQL command with teardown.
// The container's child handler must implement target.Attacher and know
// kind. An attachment no longer declared is torn down.
//
// For a container of the flow, call Attach while building the flow; for a
// container a row declares (see Nest), call it while processing that row.
//
// An attachment needs a kind. Attach on a container of the flow once an
// engine is open on it (from a processing function, say) panics, which
// fails the row being processed.
func Attach[C, A any](t *Target[C], kind string, key target.Key, spec A) {
	if t.row != nil {
		if kind == "" {
			t.row.errs = append(t.row.errs, fmt.Errorf("tidemark: attachment %q of container %q of target %s: an attachment needs a kind", key, t.path[len(t.path)-1], t.root.Key))
			return
		}
		t.row.decls = append(t.row.decls, engine.Decl{Root: t.index, Path: t.path, Attach: kind, Key: key, Value: &spec})
		return
	}
	t.flow.mu.Lock()
	defer t.flow.mu.Unlock()
	if t.flow.opened {
		panic(fmt.Sprintf("tidemark: attachment %q of target %s declared once the flow is open: a target's attachments are declared while building the flow, a row container's while processing its row", key, t.root.Key))
	}
	if kind == "" {
		t.flow.errs = append(t.flow.errs, fmt.Errorf("tidemark: attachment %q of target %s: an attachment needs a kind", key, t.root.Key))
		return
	}
	t.root.Attachments = append(t.root.Attachments, &engine.Attachment{Kind: kind, Key: key, Spec: &spec})
}

// RegisterHandler registers h for kind, so that a container or state of that
// kind which the flow no longer declares can still be torn down.
func RegisterHandler[S any](f *Flow, kind string, h target.Handler[S]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[kind] = target.Erase(h)
}

// Custom declares a target written by a simple connector (see
// target.Connector) and returns where to declare its rows. Every target
// declared with the same connector value shares one sink, so the
// connector's Mutate receives all their changes together.
func Custom[S, V any](f *Flow, conn target.Connector[S, V], spec S) *Target[V] {
	ct, err := target.ConnectorTargetFor(&f.connectors, conn)
	if err != nil {
		f.fail(err)
		return &Target[V]{flow: f, index: -1, root: &engine.Root{}}
	}
	return DeclareContainer[S, V](f, fmt.Sprintf("custom:%T", conn), ct.Key(spec), ct, spec)
}

// Query is a request to a query handler.
type Query struct {
	// Text is the query text, such as search terms.
	Text string
	// Limit bounds the results; 0 lets the handler choose.
	Limit int
	// Offset is the number of results skipped, for the pages after the
	// first.
	Offset int
	// Args are further, handler-specific arguments.
	Args map[string]string
}

// QueryPage is a query handler's result that is one page of a longer list
// of results. The command line and the server show its Items as they
// would the handler's whole result, with its Total and the links of About.
type QueryPage struct {
	// Items are the page's results: a slice, best first.
	Items any
	// Total is the number of results in all; TotalCapped says there are
	// more than Total, which counting stopped at.
	Total       int
	TotalCapped bool
	// About, when not empty, has an entry for each of Items, in order.
	About []QueryItem
}

// QueryItem says more of one result of a QueryPage, for pages that show
// it.
type QueryItem struct {
	// Snippet is the result's text around its matches, which are between
	// table.HighlightStart and table.HighlightEnd.
	Snippet string
	// Target and Key name the target state the result shows: a table's
	// name and the row's primary key (its bare value, or the JSON array of
	// a key of several columns). Empty when the result is no target state.
	Target, Key string
	// Link is the result's address elsewhere, such as on the site it came
	// from.
	Link string
}

// QueryFunc is a named read function over a flow's targets, such as a
// search. Its result is shown to users, as JSON where asked for.
type QueryFunc func(ctx context.Context, q Query) (any, error)

// QueryHandler registers fn as the query handler called name.
func (f *Flow) QueryHandler(name string, fn QueryFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "" || fn == nil {
		f.errs = append(f.errs, fmt.Errorf("tidemark: QueryHandler needs a name and a function, got %q", name))
		return
	}
	if _, dup := f.queries[name]; dup {
		f.errs = append(f.errs, fmt.Errorf("tidemark: query handler %q registered twice", name))
		return
	}
	f.queries[name] = fn
}

// QueryHandlers returns the names of the flow's query handlers, sorted.
func (f *Flow) QueryHandlers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.queries))
	for n := range f.queries {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Query runs the query handler called name.
func (f *Flow) Query(ctx context.Context, name string, q Query) (any, error) {
	f.mu.Lock()
	fn, ok := f.queries[name]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("flow %s has no query handler %q", f.name, name)
	}
	return fn(ctx, q)
}

// engineFlow returns the engine's view of the flow, or the mistakes made
// while building it.
func (f *Flow) engineFlow() (*engine.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = true
	errs := slices.Clone(f.errs)
	ef := &engine.Flow{Name: f.name, LogicVersion: f.logicVersion, Roots: f.roots, Handlers: f.handlers}
	for _, s := range f.sources {
		if !s.impl.hasProcess() {
			errs = append(errs, fmt.Errorf("tidemark: source %s has no processing function; call ForEach", s.name))
		}
		es := &engine.Source{Name: s.name, Impl: s.impl, MaxInFlight: s.maxInFlight, RefreshInterval: s.refreshInterval}
		if d, ok := s.impl.source().(OptionsDescriber); ok {
			opts, err := describeOptions(d)
			if err != nil {
				errs = append(errs, fmt.Errorf("tidemark: source %s: %w", s.name, err))
			}
			es.Options = opts
		}
		ef.Sources = append(ef.Sources, es)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("flow %s: %w", f.name, errors.Join(errs...))
	}
	return ef, nil
}

// describeOptions asks a source to describe its options, turning a panic
// into an error.
func describeOptions(d OptionsDescriber) (opts map[string]string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("DescribeOptions panicked: %v", p)
		}
	}()
	return maps.Clone(d.DescribeOptions()), nil
}

// TargetInfo describes a target the flow declares: its kind, its key, its
// desired setup (for a table, its columns) and its attachments.
type TargetInfo struct {
	Kind        string
	Key         string
	Spec        any
	Attachments []TargetInfo
}

// Targets describes the targets the flow declares, in declaration order.
func (f *Flow) Targets() []TargetInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]TargetInfo, 0, len(f.roots))
	for _, r := range f.roots {
		ti := TargetInfo{Kind: r.Kind, Key: string(r.Key), Spec: r.Spec}
		for _, a := range r.Attachments {
			ti.Attachments = append(ti.Attachments, TargetInfo{Kind: a.Kind, Key: string(a.Key), Spec: a.Spec})
		}
		out = append(out, ti)
	}
	return out
}

// RefreshInterval returns the refresh interval the source called name was
// added with (see the RefreshInterval option); 0 when it has none of its
// own, or the flow no such source.
func (f *Flow) RefreshInterval(name string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sources {
		if s.name == name {
			return s.refreshInterval
		}
	}
	return 0
}

// SourceNames returns the names of the flow's sources, in the order added.
func (f *Flow) SourceNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.sources))
	for i, s := range f.sources {
		out[i] = s.name
	}
	return out
}

// parseKey reads a key of the source named source as given on a command
// line or to the read API (see typedSource.parseKey).
func (f *Flow) parseKey(source, arg string) (string, error) {
	f.mu.Lock()
	var def *sourceDef
	for _, s := range f.sources {
		if s.name == source {
			def = s
		}
	}
	f.mu.Unlock()
	if def == nil {
		return "", fmt.Errorf("flow %s has no source %q", f.name, source)
	}
	return def.impl.parseKey(arg)
}
