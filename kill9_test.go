package tidemark_test

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

const (
	kill9Rows   = 600
	kill9EnvDir = "TIDEMARK_KILL9_DIR"
)

// slowSource lists kill9Rows rows and takes a while to get each.
type slowSource struct {
	delay time.Duration
	gets  atomic.Int64
}

func (s *slowSource) List(context.Context) iter.Seq2[tidemark.Listed[int], error] {
	return func(yield func(tidemark.Listed[int], error) bool) {
		for i := range kill9Rows {
			if !yield(tidemark.Listed[int]{Key: i, Ordinal: 1}, nil) {
				return
			}
		}
	}
}

func (s *slowSource) Get(ctx context.Context, id int) (tidemark.Fetched[string], error) {
	s.gets.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return tidemark.Fetched[string]{}, ctx.Err()
	}
	return tidemark.Fetched[string]{Exists: true, Value: fmt.Sprintf("value %d", id), Ordinal: 1}, nil
}

// sqliteTable is a connector writing rows to a table in a SQLite file: a
// target that survives the process, as a real database would.
type sqliteTable struct{ db *sql.DB }

type sqliteTableSpec struct{ Table string }

func (s *sqliteTable) PersistentKey(spec sqliteTableSpec) target.Key {
	return target.Key("sqlite/" + spec.Table)
}
func (s *sqliteTable) Describe(key target.Key) string { return string(key) }

func (s *sqliteTable) ApplySetupChange(ctx context.Context, _ target.Key, prev, cur *sqliteTableSpec) error {
	if cur != nil {
		_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+cur.Table+` (key TEXT PRIMARY KEY, value TEXT NOT NULL)`)
		return err
	}
	_, err := s.db.ExecContext(ctx, `DROP TABLE IF EXISTS `+prev.Table)
	return err
}

func (s *sqliteTable) Mutate(ctx context.Context, batch []target.Mutation[sqliteTableSpec, string]) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, m := range batch {
		for _, c := range m.Changes {
			if c.Value == nil {
				_, err = tx.ExecContext(ctx, `DELETE FROM `+m.Spec.Table+` WHERE key = ?`, string(c.Key))
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO `+m.Spec.Table+` (key, value) VALUES (?, ?)
					ON CONFLICT (key) DO UPDATE SET value = excluded.value`, string(c.Key), *c.Value)
			}
			if err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

func openSQLiteFile(t testing.TB, path string) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	return db
}

// kill9Flow opens the flow the helper process and the test both run.
func kill9Flow(t testing.TB, dir string, src *slowSource) *tidemark.Engine {
	targetDB := openSQLiteFile(t, filepath.Join(dir, "target.db"))
	t.Cleanup(func() { targetDB.Close() })
	f := tidemark.NewFlow("Kill9")
	items := tidemark.Custom(f, &sqliteTable{db: targetDB}, sqliteTableSpec{Table: "items"})
	tidemark.ForEach(tidemark.AddSource(f, "items", tidemark.Source[int, string](src), tidemark.MaxInFlight(8)),
		func(_ context.Context, r *tidemark.Row, id int, v string) error {
			items.Declare(r, target.Key(fmt.Sprint(id)), v)
			return nil
		})
	e, err := tidemark.Open(context.Background(), f, tidemark.Options{
		StateStore: filepath.Join(dir, "state.db"),
		Batch:      tidemark.BatchOptions{MaxRows: 25, MaxDelay: 20 * time.Millisecond},
	})
	require.NoError(t, err)
	return e
}

// TestKill9Helper is the process the kill -9 test kills; it does nothing
// unless started by that test.
func TestKill9Helper(t *testing.T) {
	dir := os.Getenv(kill9EnvDir)
	if dir == "" {
		t.Skip("run by TestKill9KeepsCommittedProgress")
	}
	e := kill9Flow(t, dir, &slowSource{delay: 10 * time.Millisecond})
	_, err := e.Update(context.Background(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	t.Fatal("the update finished before it was killed")
}

func TestKill9KeepsCommittedProgress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Helper$", "-test.count=1")
	cmd.Env = append(os.Environ(), kill9EnvDir+"="+dir)
	require.NoError(t, cmd.Start())

	// Kill it once about half of the rows are committed.
	stateDB := filepath.Join(dir, "state.db")
	committed := func() int {
		db := openSQLiteFile(t, stateDB)
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM tidemark_rows WHERE ordinal IS NOT NULL`).Scan(&n); err != nil {
			return 0 // not created yet
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Minute)
	for committed() < kill9Rows/2 {
		require.True(t, time.Now().Before(deadline), "the helper committed too little")
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	err := cmd.Wait()
	require.Error(t, err, "the helper was killed")

	before := committed()
	require.Less(t, before, kill9Rows, "killed before the end")
	t.Logf("killed with %d of %d rows committed", before, kill9Rows)

	// The rerun fetches exactly the rows not committed, and ends with
	// exactly the rows of a clean sync.
	src := &slowSource{}
	e := kill9Flow(t, dir, src)
	defer e.Close()
	st, err := e.Update(context.Background(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(kill9Rows-before), src.gets.Load(), "committed rows are not fetched again")
	require.Equal(t, int64(before), st.Sources["items"].Unchanged)

	targetDB := openSQLiteFile(t, filepath.Join(dir, "target.db"))
	defer targetDB.Close()
	var n, wrong int
	require.NoError(t, targetDB.QueryRow(`SELECT count(*), count(*) FILTER (WHERE value != 'value ' || key) FROM items`).Scan(&n, &wrong))
	require.Equal(t, kill9Rows, n)
	require.Zero(t, wrong)
}
