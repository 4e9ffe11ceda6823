package postgres_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark"
	pgsource "github.com/tidemark/tidemark/source/postgres"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// A table as a source, kept in sync in live mode through LISTEN/NOTIFY:
// the open orders, read again only when their updated_at moves.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/postgres")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	orders, err := pgsource.New(ctx, pool, pgsource.Options{
		Table: "orders", Key: []string{"id"}, Ordinal: "updated_at",
		Columns: []string{"customer", "total"}, Where: "status = 'open'",
	})
	if err != nil {
		log.Fatal(err)
	}
	f := tidemark.NewFlow("OpenOrders")
	out := tidemarktest.Table[pgsource.Row](f, tidemarktest.NewDB(), "open_orders")
	tidemark.ForEach(tidemark.AddSource(f, "orders", orders), func(_ context.Context, r *tidemark.Row, key string, row pgsource.Row) error {
		out.Declare(r, target.Key(key), row)
		return nil
	})
	e, err := tidemark.Open(ctx, f, tidemark.Options{StateStore: "orders-state.db"})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	// Until interrupted: the first pass lists the table, then each
	// notified change is read as it comes.
	if err := e.Live(ctx, tidemark.LiveOptions{}); err != nil {
		log.Fatal(err)
	}
}
