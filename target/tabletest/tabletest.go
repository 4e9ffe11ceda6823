// Package tabletest is the conformance suite every table target passes:
// Exercise drives real updates through a backend's tables and checks what
// the database holds.
package tabletest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// RowV1 is the first version of the suite's row type.
type RowV1 struct {
	ID    string     `tidemark:"id,pk"`
	Title string     `tidemark:"title"`
	Body  string     `tidemark:"body"`
	Score int        `tidemark:"score"`
	Tags  []string   `tidemark:"tags"`
	At    *time.Time `tidemark:"at"`
}

// RowV2 adds a column to RowV1.
type RowV2 struct {
	ID    string     `tidemark:"id,pk"`
	Title string     `tidemark:"title"`
	Body  string     `tidemark:"body"`
	Score int        `tidemark:"score"`
	Tags  []string   `tidemark:"tags"`
	At    *time.Time `tidemark:"at"`
	Extra string     `tidemark:"extra"`
}

// RowV3 changes the type of RowV1's score.
type RowV3 struct {
	ID    string     `tidemark:"id,pk"`
	Title string     `tidemark:"title"`
	Body  string     `tidemark:"body"`
	Score float64    `tidemark:"score"`
	Tags  []string   `tidemark:"tags"`
	At    *time.Time `tidemark:"at"`
}

// RowPK changes RowV1's primary key to (tenant, id).
type RowPK struct {
	Tenant string     `tidemark:"tenant,pk"`
	ID     string     `tidemark:"id,pk"`
	Title  string     `tidemark:"title"`
	Body   string     `tidemark:"body"`
	Score  int        `tidemark:"score"`
	Tags   []string   `tidemark:"tags"`
	At     *time.Time `tidemark:"at"`
}

// Table is what the suite needs of a backend's table.
type Table[T any] interface {
	Declare(r *tidemark.Row, row T)
	Rows(ctx context.Context) iter.Seq2[T, error]
	Search(ctx context.Context, query string, limit int) ([]table.Hit[T], error)
	SearchPage(ctx context.Context, query string, opts table.SearchOptions) (table.SearchPage[T], error)
}

// Backend is a database under test.
type Backend struct {
	// Open returns, for one test, the options of a fresh state store and a
	// fresh database, passed to the constructors below.
	Open func(t *testing.T) (tidemark.Options, any)
	// Columns returns the names of a table's columns, sorted.
	Columns func(t *testing.T, db any, table string) []string
	// Tables declare a table of each row type; with fullText, a full-text
	// index of its body column.
	V1 func(f *tidemark.Flow, db any, name string, fullText bool) Table[RowV1]
	V2 func(f *tidemark.Flow, db any, name string) Table[RowV2]
	V3 func(f *tidemark.Flow, db any, name string) Table[RowV3]
	PK func(f *tidemark.Flow, db any, name string) Table[RowPK]
}

// doc is the suite's source row.
type doc struct {
	Title string
	Body  string
	Score int
	Tags  []string
	At    *time.Time
}

// suite is one test's world: a source, a database, a state store.
type suite struct {
	t    *testing.T
	b    Backend
	src  *tidemarktest.Source[string, doc]
	db   any
	opts tidemark.Options
}

func newSuite(t *testing.T, b Backend) *suite {
	opts, db := b.Open(t)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2, MaxAttempts: 5}
	return &suite{t: t, b: b, src: tidemarktest.NewSource[string, doc](), db: db, opts: opts}
}

// update builds a flow whose one table is declared by declare, runs an
// update and returns its stats.
func update[T any](s *suite, opts tidemark.Options, declare func(f *tidemark.Flow) Table[T], row func(id string, d doc) T) (*tidemarktype.UpdateStats, error) {
	s.t.Helper()
	f := tidemark.NewFlow("TableTest")
	tbl := declare(f)
	tidemark.ForEach(tidemark.AddSource(f, "docs", s.src, tidemark.MaxInFlight(4)), func(_ context.Context, r *tidemark.Row, id string, d doc) error {
		tbl.Declare(r, row(id, d))
		return nil
	})
	e, err := tidemark.Open(s.t.Context(), f, opts)
	require.NoError(s.t, err)
	defer e.Close()
	return e.Update(s.t.Context(), tidemark.UpdateOptions{})
}

func mustUpdate[T any](s *suite, declare func(f *tidemark.Flow) Table[T], row func(id string, d doc) T) *tidemarktype.UpdateStats {
	s.t.Helper()
	st, err := update(s, s.opts, declare, row)
	require.NoError(s.t, err)
	require.Zero(s.t, st.Failed(), "%v", st.Failures)
	return st
}

func (s *suite) v1(name string, fullText bool) func(f *tidemark.Flow) Table[RowV1] {
	return func(f *tidemark.Flow) Table[RowV1] { return s.b.V1(f, s.db, name, fullText) }
}

func rowV1(id string, d doc) RowV1 {
	return RowV1{ID: id, Title: d.Title, Body: d.Body, Score: d.Score, Tags: d.Tags, At: d.At}
}

func rowV2(id string, d doc) RowV2 {
	return RowV2{ID: id, Title: d.Title, Body: d.Body, Score: d.Score, Tags: d.Tags, At: d.At, Extra: "extra " + id}
}

func rowV3(id string, d doc) RowV3 {
	return RowV3{ID: id, Title: d.Title, Body: d.Body, Score: float64(d.Score) + 0.5, Tags: d.Tags, At: d.At}
}

func rowPK(id string, d doc) RowPK {
	return RowPK{Tenant: "t" + id[len(id)-1:], ID: id, Title: d.Title, Body: d.Body, Score: d.Score, Tags: d.Tags, At: d.At}
}

// rows reads every row of a table.
func rows[T any](t *testing.T, tbl Table[T]) []T {
	t.Helper()
	var out []T
	for row, err := range tbl.Rows(t.Context()) {
		require.NoError(t, err)
		out = append(out, row)
	}
	return out
}

// expected maps the source's rows with row, sorted by key.
func expected[T any](s *suite, row func(id string, d doc) T) []T {
	var out []T
	for _, id := range s.src.Keys() {
		d, _ := s.src.Value(id)
		out = append(out, row(id, d))
	}
	return out
}

// fill sets n documents with ids d000 … .
func (s *suite) fill(n int) {
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for i := range n {
		a := at.Add(time.Duration(i) * time.Minute)
		s.src.Set(fmt.Sprintf("d%03d", i), doc{Title: fmt.Sprintf("Title %d", i), Body: fmt.Sprintf("body of document %d", i), Score: i, Tags: []string{"t", fmt.Sprint(i % 3)}, At: &a})
	}
}

// Exercise runs the conformance suite against b.
func Exercise(t *testing.T, b Backend) {
	t.Helper()

	t.Run("InsertUpdateDelete", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		s.fill(30)
		var tbl Table[RowV1]
		declare := func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", false); return tbl }
		st := mustUpdate(s, declare, rowV1)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 30}, onlyTarget(t, st))
		require.Equal(t, expected(s, rowV1), rows(t, tbl))

		for _, id := range []string{"d003", "d010"} {
			d, _ := s.src.Value(id)
			d.Body, d.Tags, d.At = "changed", nil, nil
			s.src.Set(id, d)
		}
		for _, id := range []string{"d000", "d029", "d015"} {
			s.src.Delete(id)
		}
		s.src.Set("new", doc{Title: "New", Body: "new body"})
		st = mustUpdate(s, declare, rowV1)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 3, Deletes: 3}, onlyTarget(t, st))
		require.Equal(t, expected(s, rowV1), rows(t, tbl))
	})

	t.Run("RerunIsIdempotent", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		s.fill(20)
		var tbl Table[RowV1]
		declare := func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", false); return tbl }
		mustUpdate(s, declare, rowV1)
		st := mustUpdate(s, declare, rowV1)
		require.Equal(t, tidemarktype.TargetStats{}, onlyTarget(t, st), "nothing to write")

		// Writing every row again changes nothing.
		f := tidemark.NewFlow("TableTest")
		tbl = s.b.V1(f, s.db, "docs", false)
		tidemark.ForEach(tidemark.AddSource(f, "docs", s.src), func(_ context.Context, r *tidemark.Row, id string, d doc) error {
			tbl.Declare(r, rowV1(id, d))
			return nil
		})
		e, err := tidemark.Open(t.Context(), f, s.opts)
		require.NoError(t, err)
		defer e.Close()
		st, err = e.Update(t.Context(), tidemark.UpdateOptions{Mode: tidemark.ModeReexport})
		require.NoError(t, err)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 20}, onlyTarget(t, st))
		require.Equal(t, expected(s, rowV1), rows(t, tbl))
	})

	t.Run("SchemaEvolution", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		s.fill(12)
		columns := func() []string { return s.b.Columns(t, s.db, "docs") }
		v1cols := []string{"at", "body", "id", "score", "tags", "title"}

		var t1 Table[RowV1]
		mustUpdate(s, func(f *tidemark.Flow) Table[RowV1] { t1 = s.b.V1(f, s.db, "docs", false); return t1 }, rowV1)
		require.Equal(t, v1cols, columns())

		// A field added: a column added and filled for every row.
		var t2 Table[RowV2]
		st := mustUpdate(s, func(f *tidemark.Flow) Table[RowV2] { t2 = s.b.V2(f, s.db, "docs"); return t2 }, rowV2)
		require.Equal(t, append(slices.Clone(v1cols[:2]), "extra", "id", "score", "tags", "title"), columns())
		require.Equal(t, expected(s, rowV2), rows(t, t2))
		require.Equal(t, int64(12), onlyTarget(t, st).Upserts)

		// The field removed: the column dropped.
		mustUpdate(s, func(f *tidemark.Flow) Table[RowV1] { t1 = s.b.V1(f, s.db, "docs", false); return t1 }, rowV1)
		require.Equal(t, v1cols, columns())
		require.Equal(t, expected(s, rowV1), rows(t, t1))

		// A field's type changed.
		var t3 Table[RowV3]
		mustUpdate(s, func(f *tidemark.Flow) Table[RowV3] { t3 = s.b.V3(f, s.db, "docs"); return t3 }, rowV3)
		require.Equal(t, v1cols, columns())
		require.Equal(t, expected(s, rowV3), rows(t, t3))

		// The primary key changed: the table is recreated, every row written.
		var tpk Table[RowPK]
		mustUpdate(s, func(f *tidemark.Flow) Table[RowPK] { tpk = s.b.PK(f, s.db, "docs"); return tpk }, rowPK)
		require.Equal(t, []string{"at", "body", "id", "score", "tags", "tenant", "title"}, columns())
		got := rows(t, tpk)
		want := expected(s, rowPK)
		slices.SortFunc(want, func(a, b RowPK) int { return strings.Compare(a.Tenant+a.ID, b.Tenant+b.ID) })
		require.Equal(t, want, got)

		// And back, with changes made meanwhile.
		s.src.Delete("d005")
		s.src.Set("d100", doc{Title: "late"})
		mustUpdate(s, func(f *tidemark.Flow) Table[RowV1] { t1 = s.b.V1(f, s.db, "docs", false); return t1 }, rowV1)
		require.Equal(t, v1cols, columns())
		require.Equal(t, expected(s, rowV1), rows(t, t1))
	})

	t.Run("InterruptedSetupConverges", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		s.fill(8)
		columns := func() []string { return s.b.Columns(t, s.db, "docs") }
		var t1 Table[RowV1]
		v1 := func(f *tidemark.Flow) Table[RowV1] { t1 = s.b.V1(f, s.db, "docs", false); return t1 }
		var t2 Table[RowV2]
		v2 := func(f *tidemark.Flow) Table[RowV2] { t2 = s.b.V2(f, s.db, "docs"); return t2 }
		mustUpdate(s, v1, rowV1)

		// The change to V2 is applied to the table, then the update dies
		// before committing it: the table holds V2's columns, the state
		// store V1 as committed and V2 as staged.
		crash := errors.New("simulated crash")
		crashing := s.opts
		crashing.Faults.AfterSetupApply = func(context.Context) error { return crash }
		_, err := update(s, crashing, v2, rowV2)
		require.ErrorIs(t, err, crash)
		require.Contains(t, columns(), "extra", "the change was applied")

		// Reverting to V1 must undo it; going to V2 again must complete it.
		mustUpdate(s, v1, rowV1)
		require.NotContains(t, columns(), "extra")
		require.Equal(t, expected(s, rowV1), rows(t, t1))

		_, err = update(s, crashing, v2, rowV2)
		require.ErrorIs(t, err, crash)
		mustUpdate(s, v2, rowV2)
		require.Contains(t, columns(), "extra")
		require.Equal(t, expected(s, rowV2), rows(t, t2), "every row written again")

		// A full-text index interrupted the same way is completed too.
		crashing.Faults.AfterSetupApply = func(context.Context) error { return crash }
		_, err = update(s, crashing, func(f *tidemark.Flow) Table[RowV1] { t1 = s.b.V1(f, s.db, "docs", true); return t1 }, rowV1)
		require.ErrorIs(t, err, crash)
		mustUpdate(s, func(f *tidemark.Flow) Table[RowV1] { t1 = s.b.V1(f, s.db, "docs", true); return t1 }, rowV1)
		hits, err := t1.Search(t.Context(), "document", 100)
		require.NoError(t, err)
		require.Len(t, hits, 8)
	})

	t.Run("CrashBetweenApplyAndCommit", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		s.fill(40)
		var tbl Table[RowV1]
		declare := func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", false); return tbl }
		mustUpdate(s, declare, rowV1)

		// Change, add and delete rows; the update applies its writes, then
		// dies before committing them.
		for i := range 10 {
			id := fmt.Sprintf("d%03d", i*4)
			if i%2 == 0 {
				s.src.Delete(id)
			} else {
				d, _ := s.src.Value(id)
				d.Body = "after the crash"
				s.src.Set(id, d)
			}
			s.src.Set(fmt.Sprintf("n%02d", i), doc{Title: "new", Body: "new"})
		}
		crash := errors.New("simulated crash")
		opts := s.opts
		opts.Batch = tidemark.BatchOptions{MaxRows: 7}
		opts.Faults.BeforeCommit = func(context.Context) error { return crash }
		_, err := update(s, opts, declare, rowV1)
		require.ErrorIs(t, err, crash)

		st := mustUpdate(s, declare, rowV1)
		require.Equal(t, expected(s, rowV1), rows(t, tbl))
		st = mustUpdate(s, declare, rowV1)
		require.Equal(t, tidemarktype.TargetStats{}, onlyTarget(t, st), "converged")
	})

	t.Run("UnicodeAndNUL", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		values := map[string]string{
			"nul":     "before\x00after",
			"invalid": "bad \xff\xfe bytes",
			"emoji":   "🚀 ünïcödé — ‘quotes’ “double” 日本語 עברית",
			"sql":     `'); DROP TABLE docs; -- "quoted" \backslash`,
			"empty":   "",
			"id\x00":  "a key with NUL",
		}
		for id, v := range values {
			s.src.Set(id, doc{Title: v, Body: v, Tags: []string{v}})
		}
		var tbl Table[RowV1]
		mustUpdate(s, func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", false); return tbl }, rowV1)
		got := make(map[string]RowV1)
		for _, r := range rows(t, tbl) {
			got[r.ID] = r
		}
		clean := table.CleanText
		require.Len(t, got, len(values))
		for id, v := range values {
			r, ok := got[clean(id)]
			require.True(t, ok, "row %q", id)
			require.Equal(t, clean(v), r.Title)
			require.Equal(t, []string{clean(v)}, r.Tags)
		}
		require.Equal(t, "beforeafter", got["nul"].Body)
		require.Equal(t, "bad \uFFFD\uFFFD bytes", got["invalid"].Body, "each invalid byte replaced")
	})

	t.Run("LargeValues", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
		s.src.Set("big", doc{Title: "big", Body: big, Tags: []string{big[:1000]}})
		var tbl Table[RowV1]
		declare := func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", false); return tbl }
		mustUpdate(s, declare, rowV1)
		got := rows(t, tbl)
		require.Len(t, got, 1)
		require.Equal(t, big, got[0].Body)

		s.src.Set("big", doc{Title: "big", Body: big + "!"})
		mustUpdate(s, declare, rowV1)
		require.Equal(t, big+"!", rows(t, tbl)[0].Body)
	})

	t.Run("TenThousandRowBatches", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		for i := range 10000 {
			s.src.Set(fmt.Sprintf("r%05d", i), doc{Title: fmt.Sprint(i), Body: "b", Score: i})
		}
		s.opts.Batch = tidemark.BatchOptions{MaxRows: 20000, MaxActions: 20000}
		var tbl Table[RowV1]
		declare := func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", false); return tbl }
		st := mustUpdate(s, declare, rowV1)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 10000}, onlyTarget(t, st))
		require.Len(t, rows(t, tbl), 10000)

		for i := range 10000 {
			if i%2 == 0 {
				s.src.Delete(fmt.Sprintf("r%05d", i))
			} else {
				s.src.Set(fmt.Sprintf("r%05d", i), doc{Title: "odd", Body: "b", Score: -i})
			}
		}
		st = mustUpdate(s, declare, rowV1)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 5000, Deletes: 5000}, onlyTarget(t, st))
		require.Equal(t, expected(s, rowV1), rows(t, tbl))
	})

	t.Run("FullTextSearch", func(t *testing.T) {
		t.Parallel()
		s := newSuite(t, b)
		s.src.Set("a", doc{Title: "a", Body: "The quick brown fox jumps over the lazy dog"})
		s.src.Set("b", doc{Title: "b", Body: "Foxes are quick; a fox is quicker than a dog, and the fox knows it"})
		s.src.Set("c", doc{Title: "c", Body: "Nothing to see here"})
		s.src.Set("d", doc{Title: "d", Body: "SQLite and PostgreSQL both search text"})
		var tbl Table[RowV1]
		declare := func(f *tidemark.Flow) Table[RowV1] { tbl = s.b.V1(f, s.db, "docs", true); return tbl }
		mustUpdate(s, declare, rowV1)

		hits, err := tbl.Search(t.Context(), "fox", 10)
		require.NoError(t, err)
		require.Len(t, hits, 2)
		require.Equal(t, "b", hits[0].Row.ID, "more matches rank first")
		require.Equal(t, "a", hits[1].Row.ID)
		require.Greater(t, hits[0].Score, hits[1].Score)
		require.Contains(t, hits[0].Snippet, table.HighlightStart)
		require.Contains(t, strings.ToLower(hits[1].Snippet), table.HighlightStart+"fox"+table.HighlightEnd)

		hits, err = tbl.Search(t.Context(), "fox", 1)
		require.NoError(t, err)
		require.Len(t, hits, 1, "limit")

		for q, want := range map[string][]string{
			`"lazy dog"`:            {"a"},
			`fox -lazy`:             {"b"},
			`postgresql OR nothing`: {"c", "d"},
			`dog fox`:               {"a", "b"},
		} {
			hits, err := tbl.Search(t.Context(), q, 10)
			require.NoError(t, err, q)
			var ids []string
			for _, h := range hits {
				ids = append(ids, h.Row.ID)
			}
			slices.Sort(ids)
			require.Equal(t, want, ids, q)
		}

		// Pages: the same order as Search, and the total.
		page, err := tbl.SearchPage(t.Context(), "fox", table.SearchOptions{Limit: 1, Offset: 1})
		require.NoError(t, err)
		require.Equal(t, 2, page.Total)
		require.False(t, page.TotalCapped)
		require.Len(t, page.Hits, 1)
		require.Equal(t, "a", page.Hits[0].Row.ID)
		require.Contains(t, strings.ToLower(page.Hits[0].Snippet), table.HighlightStart+"fox"+table.HighlightEnd)
		page, err = tbl.SearchPage(t.Context(), "fox", table.SearchOptions{Offset: 2})
		require.NoError(t, err)
		require.Equal(t, 2, page.Total)
		require.Empty(t, page.Hits, "past the end")
		page, err = tbl.SearchPage(t.Context(), "nowhere", table.SearchOptions{})
		require.NoError(t, err)
		require.Zero(t, page.Total)
		_, err = tbl.SearchPage(t.Context(), "fox", table.SearchOptions{Offset: table.MaxSearchOffset + 1})
		require.ErrorIs(t, err, table.ErrSearchTooLarge)
		_, err = tbl.SearchPage(t.Context(), "fox", table.SearchOptions{Offset: -1})
		require.Error(t, err)
		_, err = tbl.SearchPage(t.Context(), "", table.SearchOptions{})
		require.ErrorIs(t, err, table.ErrEmptyQuery)

		// User text never breaks the query.
		for _, q := range []string{`"unterminated`, `fox OR`, `'; DROP TABLE docs; --`, `NEAR(fox dog)`, `fox:*`, `fox & | !dog`, "fox\x00dog", `fox''s "it's"`} {
			_, err := tbl.Search(t.Context(), q, 10)
			require.NoError(t, err, q)
		}
		for _, q := range []string{"", "   ", `""`, "-fox", "!!!", `(((`, `\"`} {
			_, err := tbl.Search(t.Context(), q, 10)
			require.ErrorIs(t, err, table.ErrEmptyQuery, q)
		}

		// The index follows the table.
		s.src.Delete("b")
		s.src.Set("c", doc{Title: "c", Body: "now a fox is here"})
		mustUpdate(s, declare, rowV1)
		hits, err = tbl.Search(t.Context(), "fox", 10)
		require.NoError(t, err)
		var ids []string
		for _, h := range hits {
			ids = append(ids, h.Row.ID)
		}
		slices.Sort(ids)
		require.Equal(t, []string{"a", "c"}, ids)
	})
}

// onlyTarget returns the stats of the update's one target.
func onlyTarget(t *testing.T, st *tidemarktype.UpdateStats) tidemarktype.TargetStats {
	t.Helper()
	require.Len(t, st.Targets, 1)
	for _, ts := range st.Targets {
		return ts
	}
	return tidemarktype.TargetStats{}
}
