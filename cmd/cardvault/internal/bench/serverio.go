package bench

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ServerIO is what PostgreSQL wrote and read for a phase, per request: the
// WAL it generated, the full-page images in that WAL (the first change of
// a page after a checkpoint logs the whole page), the blocks it read from
// outside its shared buffers (from the page cache or the disk), and the
// dirty buffers a backend wrote out itself to make room for them (the
// background writer and the checkpointer had not). It is what grows with
// the data when a request's CPU does.
type ServerIO struct {
	WALKB         float64 `json:"wal_kb"`
	FPI           float64 `json:"full_page_images"`
	BlocksRead    float64 `json:"blocks_read"`
	BackendWrites float64 `json:"backend_writes"`
}

// ioReading is one reading of the server's counters.
type ioReading struct {
	walBytes, fpi, blocksRead, backendWrites float64
}

// readServerIO reads the WAL position and the server's counters of
// full-page images, block reads and backend writes. A backend flushes its
// counters at most once a second, so up to a second of a phase's may count
// for the next. It returns the database's error.
func readServerIO(ctx context.Context, pool *pgxpool.Pool) (ioReading, error) {
	var r ioReading
	err := pool.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::float8,
		(SELECT wal_fpi FROM pg_stat_wal)::float8,
		(SELECT blks_read FROM pg_stat_database WHERE datname = current_database())::float8,
		(SELECT buffers_backend FROM pg_stat_bgwriter)::float8`).
		Scan(&r.walBytes, &r.fpi, &r.blocksRead, &r.backendWrites)
	return r, err
}

// perRequest returns what the server did between r0 and r1 for each of n
// requests, or nil when a reading failed or there were none.
func perRequest(r0, r1 ioReading, err0, err1 error, n int64) *ServerIO {
	if err0 != nil || err1 != nil || n <= 0 {
		return nil
	}
	per := func(a, b float64) float64 { return round3((b - a) / float64(n)) }
	return &ServerIO{WALKB: round3((r1.walBytes - r0.walBytes) / 1024 / float64(n)),
		FPI: per(r0.fpi, r1.fpi), BlocksRead: per(r0.blocksRead, r1.blocksRead),
		BackendWrites: per(r0.backendWrites, r1.backendWrites)}
}

// prewarm reads every index of table into shared buffers (pg_prewarm), so
// that a phase inserting into it starts as on a vault that has been
// serving: a table that takes new rows every second has its indexes'
// pages in memory, while the bulk load and VACUUM of --preload read and
// write through a small ring of buffers and leave them cold. It returns
// the megabytes read, 0 when the extension is not available or the role
// may not create it, or the database's error.
func prewarm(ctx context.Context, pool *pgxpool.Pool, table string) (float64, error) {
	var pgErr *pgconn.PgError
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_prewarm`); err != nil {
		if errors.As(err, &pgErr) && (pgErr.Code == "42501" || pgErr.Code == "58P01") {
			return 0, nil
		}
		return 0, err
	}
	var blocks int64
	err := pool.QueryRow(ctx, `SELECT coalesce(sum(pg_prewarm(indexrelid)), 0)::bigint FROM pg_index
		WHERE indrelid = $1::regclass`, table).Scan(&blocks)
	return round1(float64(blocks) * 8192 / (1 << 20)), err
}

// printServerIO writes each phase's ServerIO.
func printServerIO(w io.Writer, phases []PhaseResult) {
	fmt.Fprintln(w, "\nPostgreSQL per request (WAL kB, full-page images in it, blocks read from outside shared buffers, dirty buffers a backend wrote out to make room):")
	for _, p := range phases {
		if s := p.PostgresIO; s != nil {
			fmt.Fprintf(w, "  %-16s %8s kB  %6s FPI  %6s blocks read  %6s written\n", p.Name, fmtNum(s.WALKB), fmtNum(s.FPI),
				fmtNum(s.BlocksRead), fmtNum(s.BackendWrites))
		}
	}
}

// columns returns s as bench.csv's four columns, empty when s is nil.
func (s *ServerIO) columns() []string {
	if s == nil {
		return []string{"", "", "", ""}
	}
	return []string{fmtNum(s.WALKB), fmtNum(s.FPI), fmtNum(s.BlocksRead), fmtNum(s.BackendWrites)}
}
