package tidemark_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// describedSource is a test source that describes its options.
type describedSource struct {
	*tidemarktest.Source[int, doc]
	options map[string]string
}

func (s describedSource) DescribeOptions() map[string]string { return maps.Clone(s.options) }

// confirmer records the deletions it is asked about and answers yes.
type confirmer struct {
	asked  []tidemarktype.Deletions
	answer bool
	err    error
}

func (c *confirmer) confirm(_ context.Context, d tidemarktype.Deletions) (bool, error) {
	c.asked = append(c.asked, d)
	return c.answer, c.err
}

func TestEmptyListingDeletesNothingUnconfirmed(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(10)
		h.mustUpdate()
		before := h.db.Rows("docs")
		for id := range 10 {
			h.src.Delete(id)
		}

		// No Confirm: held.
		h.db.ResetCounts()
		st, err := h.update(tidemark.UpdateOptions{})
		require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
		var held *tidemarktype.DeletionsHeldError
		require.ErrorAs(t, err, &held)
		require.Equal(t, tidemarktype.Deletions{Source: "docs", Listed: 0, Tracked: 10, Deleting: 10}, held.Deletions)
		require.EqualError(t, err, "source docs: 10 rows not deleted: its listing named no rows, while 10 rows are kept for it; deleting them needs a confirmation")
		require.Equal(t, int64(10), st.Sources["docs"].Held)
		require.True(t, st.Sources["docs"].ListingComplete)
		require.Zero(t, st.Sources["docs"].Deleted)
		require.Zero(t, h.db.Counts().Deletes)
		require.Equal(t, before, h.db.Rows("docs"), "nothing deleted")

		// Asked, and refused: held, and the question said what was at stake.
		no := &confirmer{}
		_, err = h.update(tidemark.UpdateOptions{Confirm: no.confirm})
		require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
		require.Equal(t, []tidemarktype.Deletions{{Source: "docs", Tracked: 10, Deleting: 10}}, no.asked)
		require.Equal(t, before, h.db.Rows("docs"))

		// A failing confirmation fails the update, deleting nothing.
		broken := &confirmer{err: errors.New("stdin closed")}
		_, err = h.update(tidemark.UpdateOptions{Confirm: broken.confirm})
		require.ErrorContains(t, err, "stdin closed")
		require.Equal(t, before, h.db.Rows("docs"))

		// A preview asks nothing, and shows the rows as the update would
		// keep them: held.
		asked := &confirmer{answer: true}
		st, err = h.update(tidemark.UpdateOptions{Preview: true, Confirm: asked.confirm})
		require.NoError(t, err)
		require.Empty(t, asked.asked)
		require.Zero(t, st.Sources["docs"].Deleted)
		require.Equal(t, int64(10), st.Sources["docs"].Held)

		// Confirmed: deleted.
		yes := &confirmer{answer: true}
		st, err = h.update(tidemark.UpdateOptions{Confirm: yes.confirm})
		require.NoError(t, err)
		require.Len(t, yes.asked, 1)
		require.Equal(t, int64(10), st.Sources["docs"].Deleted)
		require.Zero(t, st.Sources["docs"].Held)
		h.expectDocs()

		// Nothing tracked any more: an empty listing asks nothing.
		again := &confirmer{}
		_, err = h.update(tidemark.UpdateOptions{Confirm: again.confirm})
		require.NoError(t, err)
		require.Empty(t, again.asked)
	})
}

func TestPartialDeletionsNeedNoConfirmation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(10)
		h.mustUpdate()
		for id := range 9 {
			h.src.Delete(id)
		}
		c := &confirmer{}
		st, err := h.update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.NoError(t, err)
		require.Empty(t, c.asked, "the listing named a row and the options did not change")
		require.Equal(t, int64(9), st.Sources["docs"].Deleted)
		h.expectDocs()
	})
}

func TestChangedOptionsConfirmDeletions(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		src := describedSource{Source: h.src, options: map[string]string{"tag": "story", "max_results": "10"}}
		h.fill(10)
		update := func(opts tidemark.UpdateOptions) (*tidemarktype.UpdateStats, error) {
			t.Helper()
			e := h.openWith(src)
			defer e.Close()
			return e.Update(t.Context(), opts)
		}
		c := &confirmer{}
		_, err := update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.NoError(t, err)
		require.Empty(t, c.asked, "the first update records the options")

		// The options change and the listing shrinks: asked, refused, held.
		src.options["tag"] = "show_hn"
		for id := 4; id < 10; id++ {
			h.src.Delete(id)
		}
		st, err := update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
		require.Equal(t, []tidemarktype.Deletions{{Source: "docs", Listed: 4, Tracked: 10, Deleting: 6,
			OptionsBefore: map[string]string{"tag": "story", "max_results": "10"},
			OptionsNow:    map[string]string{"tag": "show_hn", "max_results": "10"}}}, c.asked)
		require.EqualError(t, err, `source docs: 6 rows not deleted: its options changed since its last update: tag "story" → "show_hn"; deleting them needs a confirmation`)
		require.Equal(t, int64(6), st.Sources["docs"].Held)
		require.Len(t, h.db.Rows("docs"), 10)

		// Asked again next time (the options were not recorded); confirmed.
		c = &confirmer{answer: true}
		st, err = update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.NoError(t, err)
		require.Len(t, c.asked, 1)
		require.Equal(t, int64(6), st.Sources["docs"].Deleted)
		h.expectDocs()

		// The new options are recorded: later deletions are not asked about.
		h.src.Delete(3)
		c = &confirmer{}
		st, err = update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.NoError(t, err)
		require.Empty(t, c.asked)
		require.Equal(t, int64(1), st.Sources["docs"].Deleted)

		// Changed options that delete nothing are recorded without asking.
		src.options["max_results"] = "20"
		_, err = update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.NoError(t, err)
		require.Empty(t, c.asked)
		h.src.Delete(2)
		_, err = update(tidemark.UpdateOptions{Confirm: c.confirm})
		require.NoError(t, err)
		require.Empty(t, c.asked, "max_results 20 was recorded")
		h.expectDocs()
	})
}

// confirmAll confirms every deletion, as a user who means them does.
func confirmAll(context.Context, tidemarktype.Deletions) (bool, error) { return true, nil }

// retagged updates 10 rows under tag "story", then changes the tag and the
// source so that the next listing names rows 0 to 4, each changed.
func retagged(t *testing.T, backend string) (*harness, describedSource) {
	t.Helper()
	h := newHarness(t, backend)
	src := describedSource{Source: h.src, options: map[string]string{"tag": "story"}}
	h.fill(10)
	e := h.openWith(src)
	_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	e.Close()
	src.options["tag"] = "show_hn"
	for id := 5; id < 10; id++ {
		h.src.Delete(id)
	}
	for id := range 5 {
		h.src.Touch(id)
	}
	return h, src
}

// Options change; the new listing names 5 of the 10 kept rows, all changed,
// and their Gets fail. 5 rows the listing left out go: the question must be asked.
func TestRegressionGuardFailedRowsStillCountedAsListed(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h, src := retagged(t, backend)
		h.src.FailGet(func(int) error { return errors.New("api down") })
		c := &confirmer{}
		e := h.openWith(src)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: c.confirm})
		e.Close()
		require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
		require.Len(t, c.asked, 1, "options changed and 5 rows go: must ask")
		require.Equal(t, int64(5), c.asked[0].Deleting)
		require.Equal(t, int64(5), st.Sources["docs"].Held)
		require.Len(t, h.db.Rows("docs"), 10, "nothing deleted unconfirmed")
	})
}

// Options change; the new listing names 5 kept rows that Get says are gone
// (goneSource).
func TestRegressionGuardRowsGoneByGetDoNotHideOthers(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h, src := retagged(t, backend)
		c := &confirmer{}
		e := h.openWith(goneSource{src})
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: c.confirm})
		e.Close()
		require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
		require.Len(t, c.asked, 1, "options changed and 5 unlisted rows go: must ask")
		require.Equal(t, int64(5), c.asked[0].Deleting, "the 5 the source said are gone went; the 5 unlisted wait")
		require.Equal(t, int64(5), st.Sources["docs"].Deleted)
		require.Len(t, h.db.Rows("docs"), 5)
	})
}

// goneSource lists its rows, but Get says every row is gone.
type goneSource struct{ describedSource }

func (goneSource) Get(context.Context, int) (tidemark.Fetched[doc], error) {
	return tidemark.Fetched[doc]{}, nil
}

// Live mode: a first pass whose deletions are held ends it, since every
// pass would hold them again; a later held pass (the listing emptied while
// it runs) does not, and each asks again.
func TestLiveHeldPasses(t *testing.T) {
	t.Parallel()
	h, src := retagged(t, "sqlite")
	e := h.openWith(src)
	passes := 0
	asked := 0
	err := e.Live(t.Context(), tidemark.LiveOptions{Mode: tidemark.ModeFullReprocess, Refresh: 10 * time.Millisecond,
		Confirm: func(context.Context, tidemarktype.Deletions) (bool, error) { asked++; return false, nil },
		OnPass:  func(tidemark.Pass) { passes++ }})
	require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
	require.Equal(t, 1, passes)
	require.Equal(t, 1, asked)
	e.Close()
	require.Len(t, h.db.Rows("docs"), 10)

	src.options["tag"] = "story" // as recorded: rows 5 to 9 go unasked
	e = h.openWith(src)
	defer e.Close()
	stop := make(chan struct{})
	var gets []int
	asked = 0
	h.src.ResetCounts()
	err = e.Live(t.Context(), tidemark.LiveOptions{Mode: tidemark.ModeFullReprocess, Refresh: 10 * time.Millisecond, Stop: stop,
		Confirm: func(context.Context, tidemarktype.Deletions) (bool, error) { asked++; return false, nil },
		OnPass: func(p tidemark.Pass) {
			gets = append(gets, h.src.Gets())
			h.src.ResetCounts()
			if p.N == 1 {
				for _, id := range h.src.Keys() {
					h.src.Delete(id)
				}
			}
			if p.N == 4 {
				close(stop)
			}
		}})
	require.NoError(t, err)
	require.Equal(t, []int{5, 0, 0, 0}, gets, "only the first pass is a full reprocess")
	require.Equal(t, 3, asked, "every held pass asks the library's Confirm")
	require.Len(t, h.db.Rows("docs"), 5, "kept")
}

// A source that described options and now describes none (nil): the change
// is asked about, confirmed, and never recorded: every later deletion asks again.
func TestRegressionGuardOptionsThatGoAreRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	src := describedSource{Source: h.src, options: map[string]string{"tag": "story"}}
	h.fill(10)
	e := h.openWith(src)
	_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	e.Close()
	src.options = nil
	for i := 9; i >= 7; i-- {
		h.src.Delete(i)
		c := &confirmer{answer: true}
		e = h.openWith(src)
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{Confirm: c.confirm})
		e.Close()
		require.NoError(t, err)
		if i == 9 {
			require.Len(t, c.asked, 1, "the options went: asked once")
		} else {
			require.Empty(t, c.asked, "the change to no options was confirmed already")
		}
	}
}

// A listing of keys none of which can be used names no row: the deletion
// of the kept rows is asked about.
func TestRegressionGuardUnusableKeysNameNoRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := tidemark.NewFlow("Bad")
		db := tidemarktest.NewDB()
		notes := tidemarktest.Table[string](f, db, "notes")
		src := tidemarktest.NewSource[string, string]()
		src.Set("a", "x")
		src.Set("b", "y")
		tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
			notes.Declare(r, target.Key(k), v)
			return nil
		})
		opts := stateStore(t, backend)
		e, err := tidemark.Open(t.Context(), f, opts)
		require.NoError(t, err)
		defer e.Close()
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		src.Delete("a")
		src.Delete("b")
		src.Set("\xff", "not UTF-8: a key that cannot be used")
		c := &confirmer{}
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: c.confirm})
		require.ErrorIs(t, err, tidemark.ErrDeletionsHeld)
		require.Equal(t, []tidemarktype.Deletions{{Source: "notes", Listed: 0, Tracked: 2, Deleting: 2}}, c.asked)
		require.Equal(t, int64(1), st.Sources["notes"].Errors)
		require.Len(t, db.Rows("notes"), 2)
	})
}

// A DescribeOptions that panics fails Open with an error, not the process.
func TestDescribeOptionsPanicFailsOpen(t *testing.T) {
	t.Parallel()
	f := tidemark.NewFlow("Panicky")
	db := tidemarktest.NewDB()
	notes := tidemarktest.Table[string](f, db, "notes")
	tidemark.ForEach(tidemark.AddSource(f, "notes", panickySource{tidemarktest.NewSource[string, string]()}),
		func(_ context.Context, r *tidemark.Row, k, v string) error {
			notes.Declare(r, target.Key(k), v)
			return nil
		})
	_, err := tidemark.Open(t.Context(), f, stateStore(t, "sqlite"))
	require.ErrorContains(t, err, "source notes: DescribeOptions panicked: boom")
}

type panickySource struct {
	*tidemarktest.Source[string, string]
}

func (panickySource) DescribeOptions() map[string]string { panic("boom") }

// Live mode holds the flow's lock between its passes: an update started
// meanwhile is refused, and a second live run too.
func TestLiveHoldsTheLockBetweenPasses(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(3)
		e := h.open()
		defer e.Close()
		stop := make(chan struct{})
		first := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- e.Live(t.Context(), tidemark.LiveOptions{Refresh: time.Hour, Stop: stop,
				OnPass: func(p tidemark.Pass) {
					if p.N == 1 {
						close(first)
					}
				}})
		}()
		<-first // between passes: the next is an hour away
		_, err := h.update(tidemark.UpdateOptions{})
		require.ErrorIs(t, err, tidemark.ErrFlowLocked)
		other := h.open()
		defer other.Close()
		require.ErrorIs(t, other.Live(t.Context(), tidemark.LiveOptions{}), tidemark.ErrFlowLocked)
		close(stop)
		require.NoError(t, <-done)
		h.mustUpdate() // released
	})
}
