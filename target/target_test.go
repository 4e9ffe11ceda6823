package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

type logSink struct{ calls [][]string }

func (s *logSink) Apply(_ context.Context, actions []string) error {
	s.calls = append(s.calls, actions)
	return nil
}

type funcSinkValue struct{ f func() }

func (funcSinkValue) Apply(context.Context, []string) error { return nil }

func TestApplyBatch(t *testing.T) {
	t.Parallel()

	a, b := &logSink{}, &logSink{}
	_, err := ApplyBatch(t.Context(), []Action{Do[string](a, "1"), {}, Do[string](a, "2")})
	require.NoError(t, err)
	require.Equal(t, [][]string{{"1", "2"}}, a.calls, "one call, zero actions skipped")

	_, err = ApplyBatch(t.Context(), []Action{Do[string](a, "1"), Do[string](b, "2")})
	require.ErrorContains(t, err, "two sinks")

	children, err := ApplyBatch(t.Context(), nil)
	require.NoError(t, err)
	require.Nil(t, children)

	require.True(t, SameSink(Do[string](a, "x"), Do[string](a, "y")))
	require.False(t, SameSink(Do[string](a, "x"), Do[string](b, "y")))
	require.Equal(t, a, Do[string](a, "x").Sink())
	require.Equal(t, "x", Do[string](a, "x").Value())
	require.True(t, Action{}.IsZero())
	require.Nil(t, Action{}.Sink())

	require.PanicsWithValue(t, "target: sink of type target.funcSinkValue is not comparable; use a pointer", func() {
		Do[string](funcSinkValue{}, "x")
	})
	require.Panics(t, func() { Do[string](nil, "x") })
}

func TestContainerSinkChildrenAlign(t *testing.T) {
	t.Parallel()

	child := Erase[string](HandlerFunc[string](func(Key, *string, []Record, bool) (*Reconciled, error) { return nil, nil }))
	cs := NewContainerSink(func(_ context.Context, actions []int) ([]Erased, error) {
		out := make([]Erased, len(actions))
		for i, a := range actions {
			if a > 0 {
				out[i] = child
			}
		}
		return out, nil
	})
	children, err := ApplyBatch(t.Context(), []Action{DoContainer[int](cs, 1), {}, DoContainer[int](cs, 0), DoContainer[int](cs, 2)})
	require.NoError(t, err)
	require.Len(t, children, 4)
	require.False(t, children[0].IsZero())
	require.True(t, children[1].IsZero())
	require.True(t, children[2].IsZero())
	require.False(t, children[3].IsZero())

	bad := NewContainerSink(func(context.Context, []int) ([]Erased, error) { return nil, nil })
	_, err = ApplyBatch(t.Context(), []Action{DoContainer[int](bad, 1)})
	require.ErrorContains(t, err, "returned 0 child handlers for 1 actions")
}

type attacher struct {
	HandlerFunc[int]
}

func (attacher) Attachment(kind string) (Erased, bool) {
	if kind == "index" {
		return Erase[string](HandlerFunc[string](func(Key, *string, []Record, bool) (*Reconciled, error) { return nil, nil })), true
	}
	return Erased{}, false
}

func TestErased(t *testing.T) {
	t.Parallel()

	var got []string
	h := HandlerFunc[int](func(key Key, desired *int, prev []Record, mm bool) (*Reconciled, error) {
		if desired == nil {
			got = append(got, fmt.Sprintf("%s gone", key))
		} else {
			got = append(got, fmt.Sprintf("%s=%d %v %v", key, *desired, len(prev), mm))
		}
		return nil, nil
	})
	e := Erase[int](h)
	v := 7
	_, err := e.Reconcile("a", 5, []Record{{1}}, false)
	require.NoError(t, err)
	_, err = e.Reconcile("b", &v, nil, true)
	require.NoError(t, err)
	_, err = e.Reconcile("c", nil, nil, true)
	require.NoError(t, err)
	_, err = e.Reconcile("d", "not an int", nil, true)
	require.ErrorContains(t, err, "wants int, got string")
	require.Equal(t, []string{"a=5 1 false", "b=7 0 true", "c gone"}, got)
	require.Equal(t, "int", e.ValueType().String())

	_, ok := e.Attachment("index")
	require.False(t, ok, "the handler is not an Attacher")
	withAtt := Erase[int](attacher{h})
	att, ok := withAtt.Attachment("index")
	require.True(t, ok)
	require.Equal(t, "string", att.ValueType().String())
	_, ok = withAtt.Attachment("other")
	require.False(t, ok)

	require.True(t, Erase[int](nil).IsZero())
	_, err = Erased{}.Reconcile("x", nil, nil, true)
	require.Error(t, err)
}

func TestUnchanged(t *testing.T) {
	t.Parallel()

	r := Record("r")
	require.True(t, Unchanged(r, []Record{Record("r")}, false))
	require.True(t, Unchanged(r, []Record{Record("r"), Record("r")}, false))
	require.False(t, Unchanged(r, []Record{Record("r")}, true), "may be missing")
	require.False(t, Unchanged(r, nil, false), "nothing exists")
	require.False(t, Unchanged(r, []Record{Record("r"), Record("s")}, false), "one version differs")
}

// spy is a connector recording its calls.
type spy struct {
	calls    []string
	mutates  [][]Mutation[spec, string]
	failWith error
}

type spec struct {
	Name    string
	Columns int
}

func (s *spy) PersistentKey(sp spec) Key { return Key("t/" + sp.Name) }
func (s *spy) Describe(k Key) string     { return "table " + string(k) }

func (s *spy) ApplySetupChange(_ context.Context, k Key, prev, cur *spec) error {
	str := func(p *spec) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(p.Columns)
	}
	s.calls = append(s.calls, fmt.Sprintf("%s: %s -> %s", k, str(prev), str(cur)))
	return s.failWith
}

func (s *spy) Mutate(_ context.Context, batch []Mutation[spec, string]) error {
	s.mutates = append(s.mutates, batch)
	return nil
}

func (s *spy) Prepare(_ context.Context, sp spec) (spec, error) {
	sp.Name += " (prepared)"
	return sp, nil
}

func specRecord(t *testing.T, s spec) Record {
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return b
}

func TestConnectorSetup(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		desired      *spec
		prev         []spec
		mayBeMissing bool
		want         []string
		nothing      bool
	}{
		"create":           {desired: &spec{Columns: 2}, mayBeMissing: true, want: []string{"t/a: nil -> 2"}},
		"unchanged":        {desired: &spec{Columns: 2}, prev: []spec{{Columns: 2}}, want: nil},
		"update":           {desired: &spec{Columns: 3}, prev: []spec{{Columns: 2}}, want: []string{"t/a: 2 -> 3"}},
		"interrupted":      {desired: &spec{Columns: 4}, prev: []spec{{Columns: 2}, {Columns: 3}}, mayBeMissing: true, want: []string{"t/a: nil -> 4", "t/a: 2 -> 4", "t/a: 3 -> 4"}},
		"drop":             {prev: []spec{{Columns: 2}}, want: []string{"t/a: 2 -> nil"}},
		"drop interrupted": {prev: []spec{{Columns: 2}, {Columns: 3}}, mayBeMissing: true, want: []string{"t/a: 2 -> nil", "t/a: 3 -> nil"}},
		"drop nothing":     {mayBeMissing: true, nothing: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := &spy{}
			ct := NewConnectorTarget[spec, string](s)
			var prev []Record
			for _, p := range tt.prev {
				p.Name = "a"
				prev = append(prev, specRecord(t, p))
			}
			if tt.desired != nil {
				tt.desired.Name = "a"
			}
			rec, err := ct.Reconcile("t/a", tt.desired, prev, tt.mayBeMissing)
			require.NoError(t, err)
			if tt.nothing {
				require.Nil(t, rec)
				return
			}
			children, err := ApplyBatch(t.Context(), []Action{rec.Action})
			require.NoError(t, err)
			require.Equal(t, tt.want, s.calls)
			if tt.desired == nil {
				require.Nil(t, rec.Record)
				require.True(t, children[0].IsZero())
				return
			}
			require.Equal(t, specRecord(t, *tt.desired), rec.Record)
			require.False(t, children[0].IsZero())
		})
	}
}

func TestConnectorSetupFailure(t *testing.T) {
	t.Parallel()
	s := &spy{failWith: errors.New("permission denied")}
	ct := NewConnectorTarget[spec, string](s)
	rec, err := ct.Reconcile("t/a", &spec{Name: "a"}, nil, true)
	require.NoError(t, err)
	_, err = ApplyBatch(t.Context(), []Action{rec.Action})
	require.ErrorContains(t, err, "setting up table t/a: permission denied")
}

func TestConnectorMutations(t *testing.T) {
	t.Parallel()
	s := &spy{}
	ct := NewConnectorTarget[spec, string](s)
	child := func(name string) Erased {
		rec, err := ct.Reconcile(Key("t/"+name), &spec{Name: name}, nil, true)
		require.NoError(t, err)
		children, err := ApplyBatch(t.Context(), []Action{rec.Action})
		require.NoError(t, err)
		return children[0]
	}
	a, b := child("a"), child("b")

	var actions []Action
	plan := func(h Erased, key Key, v any, prev []Record, mm bool) *Reconciled {
		rec, err := h.Reconcile(key, v, prev, mm)
		require.NoError(t, err)
		if rec != nil {
			actions = append(actions, rec.Action)
		}
		return rec
	}
	x := plan(b, "x", "1", nil, true)
	plan(a, "y", "2", nil, true)
	plan(b, "z", nil, []Record{{1}}, false)
	require.Nil(t, plan(a, "w", "3", []Record{mustFingerprint(t, "3")}, false), "unchanged")
	require.Nil(t, plan(a, "v", nil, nil, true), "nothing to delete")
	require.Equal(t, mustFingerprint(t, "1"), x.Record)

	_, err := ApplyBatch(t.Context(), actions)
	require.NoError(t, err)
	require.Len(t, s.mutates, 1, "one Mutate call for both targets")
	batch := s.mutates[0]
	require.Len(t, batch, 2)
	require.Equal(t, Key("t/b"), batch[0].Key, "targets in order of first appearance")
	require.Equal(t, "b (prepared)", batch[0].Spec.Name)
	require.Equal(t, []Change[string]{{Key: "x", Value: ptr("1")}, {Key: "z"}}, batch[0].Changes)
	require.Equal(t, Key("t/a"), batch[1].Key)
	require.Equal(t, []Change[string]{{Key: "y", Value: ptr("2")}}, batch[1].Changes)
}

func TestConnectorTargetsShareOneAdapter(t *testing.T) {
	t.Parallel()
	var set ConnectorTargets
	s := &spy{}
	a, err := ConnectorTargetFor[spec, string](&set, s)
	require.NoError(t, err)
	b, err := ConnectorTargetFor[spec, string](&set, s)
	require.NoError(t, err)
	require.Same(t, a, b)
	_, err = ConnectorTargetFor[spec, int](&set, Connector[spec, int](intSpy{s}))
	require.NoError(t, err, "a different connector value")
}

type intSpy struct{ *spy }

func (intSpy) Mutate(context.Context, []Mutation[spec, int]) error { return nil }

func mustFingerprint(t *testing.T, v any) Record {
	r, err := Fingerprint(v)
	require.NoError(t, err)
	return r
}

func ptr[T any](v T) *T { return &v }

// invalidatingSpy loses its rows when the column count changes.
type invalidatingSpy struct{ spy }

func (invalidatingSpy) SetupInvalidation(prev, cur spec) Invalidation {
	if prev.Columns != cur.Columns {
		return InvalidateLossy
	}
	return InvalidateNone
}

func TestConnectorSetupInvalidation(t *testing.T) {
	t.Parallel()
	ct := NewConnectorTarget[spec, string](&invalidatingSpy{})
	rec, err := ct.Reconcile("t/a", &spec{Name: "a", Columns: 3}, []Record{specRecord(t, spec{Name: "a", Columns: 2})}, false)
	require.NoError(t, err)
	require.Equal(t, InvalidateLossy, rec.Invalidate)

	rec, err = ct.Reconcile("t/a", &spec{Name: "a", Columns: 2}, []Record{specRecord(t, spec{Name: "a", Columns: 2})}, false)
	require.NoError(t, err)
	require.Equal(t, InvalidateNone, rec.Invalidate, "unchanged")

	plain := NewConnectorTarget[spec, string](&spy{})
	rec, err = plain.Reconcile("t/a", &spec{Name: "a", Columns: 3}, []Record{specRecord(t, spec{Name: "a", Columns: 2})}, false)
	require.NoError(t, err)
	require.Equal(t, InvalidateNone, rec.Invalidate, "a connector that is not a SetupInvalidator")
}
