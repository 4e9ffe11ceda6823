// Package pgdb holds what Tidemark's PostgreSQL code shares: connection
// pools and the classification of errors a retry may fix.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark/internal/retry"
)

// applicationName is set on the connections of the pools NewPool creates,
// unless the URL sets one.
const applicationName = "tidemark"

// NewPool connects a pool to the database at url, a PostgreSQL URL or
// key=value connection string as pgxpool.ParseConfig takes it, whose
// connections run queries in mode.
func NewPool(ctx context.Context, url string, mode pgx.QueryExecMode) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn redacts the password from the message.
		return nil, fmt.Errorf("parsing the database URL: %w", err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, Classify(ctx, fmt.Errorf("creating the connection pool: %w", err))
	}
	return pool, nil
}

// retryableCodes are the SQLSTATEs a retry may fix, besides class 08.
var retryableCodes = map[string]bool{
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"53300": true, // too_many_connections
	"57P01": true, // admin_shutdown: the backend was terminated
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: the server is starting
}

// Classify marks errors a retry may fix: a lost or refused connection, a
// server shutting down or starting, a serialization failure or deadlock,
// too many connections. An error after ctx ended never is: retrying cannot
// outlive the context.
func Classify(ctx context.Context, err error) error {
	if err == nil || retry.Is(err) || ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return err
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		if strings.HasPrefix(pgErr.Code, "08") || retryableCodes[pgErr.Code] {
			return retry.Mark(err)
		}
		return err
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return retry.Mark(err)
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return retry.Mark(err)
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return retry.Mark(err)
	}
	return err
}
