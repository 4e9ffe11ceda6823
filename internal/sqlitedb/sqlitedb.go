// Package sqlitedb opens SQLite databases the way Tidemark uses them
// everywhere — WAL mode, a busy timeout, immediate write transactions — and
// marks the errors a retry may fix.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tidemark/tidemark/internal/retry"
)

// Open opens (creating if needed) the database file at path: WAL journal so
// that readers run beside the one writer, a 10 s busy timeout, NORMAL
// synchronous (a committed transaction survives a crash of the process),
// and transactions that take the write lock at BEGIN.
func Open(ctx context.Context, path string, maxConns int) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty path")
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+uriPath(path)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, Classify(err))
	}
	return db, nil
}

// HasTable reports whether the database file at path has a table called
// name. It opens the file read-only, so that it writes nothing, not even
// the journal mode.
func HasTable(ctx context.Context, path, name string) (bool, error) {
	db, err := sql.Open("sqlite", "file:"+uriPath(path)+"?mode=ro")
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", path, err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
		return false, fmt.Errorf("reading %s: %w", path, Classify(err))
	}
	return n > 0, nil
}

// uriPath escapes the characters a SQLite URI gives a meaning to, so that
// the file's name is path itself: "we?ird.db" is not the file "we".
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Classify marks errors a retry may fix: a busy or locked database.
func Classify(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return retry.Mark(err)
		}
	}
	return err
}
