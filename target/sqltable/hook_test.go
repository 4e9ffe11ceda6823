package sqltable_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/tidemarktest"
)

type listing struct {
	SKU     string     `tidemark:"sku,pk"`
	Cents   int64      `tidemark:"cents"`
	Seen    time.Time  `tidemark:"seen"`
	Note    *string    `tidemark:"note"`
	Removed *time.Time `tidemark:"removed"`
}

// TestOnChangeTellsRowsAsTheirStruct: a table's hook is told its rows as
// the struct they were declared as, on both databases.
func TestOnChangeTellsRowsAsTheirStruct(t *testing.T) {
	t.Parallel()
	urls := databaseURLs()
	seen := time.Date(2026, 12, 2, 10, 30, 0, 123456000, time.UTC)
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sqltable.Open(t.Context(), "main", url(t), sqltable.Options{})
			require.NoError(t, err)
			defer db.Close()
			src := tidemarktest.NewSource[string, int64]()
			src.Set("a", 100)
			f := tidemark.NewFlow("Listings")
			listings := sqltable.Declare[listing](f, db, "listings")
			tidemark.ForEach(tidemark.AddSource(f, "skus", src), func(_ context.Context, r *tidemark.Row, sku string, cents int64) error {
				note := "in stock"
				listings.Declare(r, listing{SKU: sku, Cents: cents, Seen: seen, Note: &note})
				return nil
			})
			var (
				mu   sync.Mutex
				told []tidemark.TargetChange[listing]
			)
			sqltable.OnChange(listings, func(_ context.Context, c tidemark.TargetChange[listing]) error {
				mu.Lock()
				defer mu.Unlock()
				told = append(told, c)
				return nil
			})
			e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: db.URL()})
			require.NoError(t, err)
			defer e.Close()
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			src.Set("a", 90)
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)

			require.Len(t, told, 2)
			require.Nil(t, told[0].Old)
			c := told[1]
			require.Equal(t, "a", c.Old.SKU)
			require.Equal(t, int64(100), c.Old.Cents)
			require.Equal(t, int64(90), c.New.Cents)
			require.True(t, seen.Equal(c.New.Seen), "%v", c.New.Seen)
			require.Equal(t, "in stock", *c.New.Note)
			require.Nil(t, c.New.Removed)
			require.Greater(t, c.Seq, told[0].Seq)
		})
	}
}
