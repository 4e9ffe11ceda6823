package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/postgres"
	"github.com/tidemark/tidemark/internal/statestore/sqlite"
	"github.com/tidemark/tidemark/target"
)

// BenchmarkReadAPI measures the read API — one row's state, a target
// state's declarers, a page of rows — against a state store holding
// TIDEMARK_BENCH_ROWS tracked rows (default 1,000,000), each declaring one
// state of its own and one shared with 999 others. The goal is at most
// 5 ms per call on either store.
func BenchmarkReadAPI(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("TIDEMARK_BENCH_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	stores := map[string]func(b *testing.B) statestore.Store{
		"sqlite": func(b *testing.B) statestore.Store {
			s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "state.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"postgres": func(b *testing.B) statestore.Store {
			url, schema := pgtest.Schema(b)
			s, err := postgres.Open(b.Context(), url, schema)
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			store := stores[name](b)
			defer store.Close()
			e := fillForReads(b, store, n)
			ctx := b.Context()
			rng := rand.New(rand.NewPCG(1, 2))
			key := func() string { return fmt.Sprintf("%08d", rng.IntN(n)) }
			b.Run("Row", func(b *testing.B) {
				for b.Loop() {
					if _, err := e.RowState(ctx, "s", key()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Declarers", func(b *testing.B) {
				for b.Loop() {
					if _, err := e.Declarers(ctx, "c", target.Key("own/"+key())); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("DeclarersShared", func(b *testing.B) {
				for b.Loop() {
					refs, err := e.Declarers(ctx, "c", target.Key(fmt.Sprintf("shared/%d", rng.IntN(n/1000))))
					if err != nil || len(refs) != 1000 {
						b.Fatal(len(refs), err)
					}
				}
			})
			b.Run("Page100", func(b *testing.B) {
				for b.Loop() {
					if _, err := e.RowStates(ctx, RowsParams{Source: "s", After: key(), Limit: 100}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// fillForReads sets the test flow's container up and writes n committed
// rows straight into the store, in batches of 10,000.
func fillForReads(b *testing.B, store statestore.Store, n int) *Engine {
	b.Helper()
	ctx := b.Context()
	flow := &Flow{
		Name:    "test",
		Sources: []*Source{{Name: "s", Impl: newFakeSource(0, nil), MaxInFlight: 1}},
		Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: &recordingSink{}}))), Spec: "v1", Container: true}},
	}
	e, err := New(flow, store, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	targets, err := store.TargetList(ctx, statestore.TargetListParams{Flow: "test"})
	if err != nil || len(targets) != 1 {
		b.Fatal(targets, err)
	}
	root := targets[0].ID
	fl, err := store.FlowGet(ctx, statestore.FlowGetParams{Flow: "test"})
	if err != nil {
		b.Fatal(err)
	}
	src, err := store.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "test", Name: "s"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	const batch = 10_000
	record := make([]byte, 32)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		pre := make([]statestore.PrecommitRow, 0, hi-lo)
		for i := lo; i < hi; i++ {
			pre = append(pre, statestore.PrecommitRow{Key: fmt.Sprintf("%08d", i)})
		}
		ids, err := store.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: pre})
		if err != nil {
			b.Fatal(err)
		}
		rows := make([]statestore.CommitRow, 0, hi-lo)
		for j, i := 0, lo; i < hi; i, j = i+1, j+1 {
			own, shared := fmt.Sprintf("own/%08d", i), fmt.Sprintf("shared/%d", i/1000)
			ord := int64(i)
			rows = append(rows, statestore.CommitRow{ID: ids[j], Ordinal: &ord, ContentFP: record, LogicFP: e.logicFP, Gen: fl.Gen,
				Tracking: statestore.EncodeSections([]statestore.Section{{TargetID: root, Gen: fl.Gen, Entries: []statestore.Entry{
					{Key: own, Record: record, Wrote: true}, {Key: shared, Record: record}}}}),
				NewOwners: []statestore.OwnerKey{
					{TargetID: root, KeyHash: statestore.HashKey(own)}, {TargetID: root, KeyHash: statestore.HashKey(shared)}}})
		}
		if err := store.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Rows: rows}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("filled %d rows in %v", n, time.Since(start).Round(time.Millisecond))
	return e
}
