package engine

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/target"
)

// target.Do documents: "It panics if sink is nil or not comparable, a
// programming error the engine reports as a failed row." The engine does
// not recover panics from Reconcile: the whole process dies.
type badSink struct{ tags []string } // not comparable

func (badSink) Apply(context.Context, []rec) error { return nil }

type panickyLeaf struct{}

func (panickyLeaf) Reconcile(key target.Key, desired *string, prev []target.Record, mm bool) (*target.Reconciled, error) {
	if desired != nil && *desired == "boom" {
		return &target.Reconciled{Action: target.Do[rec](badSink{}, rec{key: key})}, nil
	}
	return nil, nil
}

func TestRegressionReconcilePanicIsAFailedRow(t *testing.T) {
	w := newWorld(t, 1)
	w.srcs[0].set("A", "k=boom")
	flow := &Flow{
		Name:    "review",
		Sources: []*Source{{Name: "s0", Impl: w.srcs[0], MaxInFlight: 1}},
		Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](panickyLeaf{}))), Spec: "v1", Container: true}},
	}
	e, err := New(flow, w.store, Options{})
	require.NoError(t, err)
	st, err := e.Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Sources["s0"].Errors)
}
