package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// PhaseReadFloor is an audited read over HTTP with nothing of the vault's
// in the way: a bare net/http server in the bench process, on loopback,
// answers GET /tokens/{id} with the token's row as JSON once
// baseline-audit's statement has found it and written its audit row. Reads
// are batched as the vault batches them (each batch takes every read that
// arrived while the batches in flight ran, two in flight), one statement
// and one durable commit per batch. No authentication, crypto, chaining,
// middleware or access log: what any server that makes each read's audit
// row durable before it answers can reach on this machine, so the read
// target's ratio to baseline-http is bounded by this phase's.
const PhaseReadFloor = "baseline-http-audit"

// readFloor is the phase's server.
type readFloor struct {
	b       *benchRun
	srv     *http.Server
	url     string
	reads   chan floorRead
	seq     atomic.Int64    // the audit rows' chain_seq, above baseline-audit's (floorSeqBase)
	stopped <-chan struct{} // closed when the phase ends and the batch writers stop
}

// floorSeqBase puts the phase's chain_seq values above those of
// baseline-audit's two workers (worker << 40), in the same bench_audit.
const floorSeqBase = int64(auditFloorBatches) << 40

// floorRead is one request waiting for its batch.
type floorRead struct {
	id   uuid.UUID
	done chan floorAnswer
}

// floorAnswer is a read's answer: the row as JSON (nil when no token has
// the id), or the batch's error.
type floorAnswer struct {
	body []byte
	err  error
}

// floorRecord is the JSON of a token row without its ciphertexts.
type floorRecord struct {
	ID        uuid.UUID       `json:"id"`
	Tenant    uuid.UUID       `json:"tenant_id"`
	Key       *string         `json:"business_key"`
	IIN       string          `json:"iin"`
	LastFour  string          `json:"last4"`
	Length    int16           `json:"pan_length"`
	Scheme    string          `json:"scheme"`
	ExpMonth  int16           `json:"exp_month"`
	ExpYear   int16           `json:"exp_year"`
	Metadata  json.RawMessage `json:"metadata"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// startReadFloor starts the phase's server on loopback and its batch
// writers; both stop when ctx ends. It returns an error when it cannot
// listen.
func (b *benchRun) startReadFloor(ctx context.Context) (*readFloor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &readFloor{b: b, url: "http://" + ln.Addr().String(), reads: make(chan floorRead, b.o.Concurrency), stopped: ctx.Done()}
	f.seq.Store(floorSeqBase)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tokens/{id}", f.serveRead)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	for range auditFloorBatches {
		go f.writeBatches(ctx)
	}
	context.AfterFunc(ctx, func() { _ = f.srv.Close() })
	return f, nil
}

// serveRead answers one read once its batch committed: 200 with the row,
// 404 for an id no token has, 500 when the batch failed; nothing once the
// phase ended.
func (f *readFloor) serveRead(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	rd := floorRead{id: id, done: make(chan floorAnswer, 1)}
	select {
	case f.reads <- rd:
	case <-r.Context().Done():
		return
	}
	var a floorAnswer
	select {
	case a = <-rd.done:
	case <-f.stopped: // the writers are gone: nobody answers a read still queued
		return
	}
	switch {
	case a.err != nil:
		http.Error(w, a.err.Error(), http.StatusInternalServerError)
	case a.body == nil:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.body)
	}
}

// writeBatches writes batches until ctx ends: each takes the read waiting
// first and every read that arrived meanwhile.
func (f *readFloor) writeBatches(ctx context.Context) {
	for {
		var batch []floorRead
		select {
		case <-ctx.Done():
			return
		case rd := <-f.reads:
			batch = append(batch, rd)
		}
	more:
		for len(batch) < f.b.o.Concurrency {
			select {
			case rd := <-f.reads:
				batch = append(batch, rd)
			default:
				break more
			}
		}
		rows, err := f.write(ctx, batch)
		for _, rd := range batch {
			rd.done <- floorAnswer{body: rows[rd.id], err: err}
		}
	}
}

// write runs baseline-audit's statement for the batch in its own
// transaction, sent in one round trip with its BEGIN and COMMIT, and
// returns each found token's JSON by id.
func (f *readFloor) write(ctx context.Context, batch []floorRead) (map[uuid.UUID][]byte, error) {
	n := len(batch)
	ids, seqs, prev, hash := make([]uuid.UUID, n), make([]int64, n), make([][]byte, n), make([][]byte, n)
	for i, rd := range batch {
		ids[i], seqs[i] = rd.id, f.seq.Add(1)
		prev[i], hash[i] = make([]byte, 32), make([]byte, 32)
		_, _ = rand.Read(hash[i])
	}
	var pb pgx.Batch
	pb.Queue("BEGIN")
	found := make(map[uuid.UUID][]byte, n)
	pb.Queue(auditFloorSQL, ids, seqs, prev, hash, time.Now().UTC(), f.b.env.tenantID).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			js, err := floorJSON(rows)
			if err != nil {
				return err
			}
			found[js.ID] = js.body
		}
		return rows.Err()
	})
	pb.Queue("COMMIT")
	if err := f.b.env.pool.SendBatch(ctx, &pb).Close(); err != nil {
		return nil, err
	}
	return found, nil
}

// floorRow is a scanned row's id and JSON.
type floorRow struct {
	ID   uuid.UUID
	body []byte
}

// floorJSON scans a token row and returns it as JSON.
func floorJSON(rows pgx.Rows) (floorRow, error) {
	var r benchRow
	if err := rows.Scan(r.dest()...); err != nil {
		return floorRow{}, err
	}
	body, err := json.Marshal(floorRecord{ID: r.id, Tenant: r.tenantID, Key: r.businessKey, IIN: r.iin,
		LastFour: r.lastFour, Length: r.panLen, Scheme: r.scheme, ExpMonth: r.expMonth, ExpYear: r.expYear,
		Metadata: r.meta, CreatedAt: r.created, UpdatedAt: r.updated})
	return floorRow{ID: r.id, body: body}, err
}

// timedReadFloor runs the phase: the read phase's requests, to the bare
// server instead of the vault.
func (b *benchRun) timedReadFloor(ctx context.Context) e2e.Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f, err := b.startReadFloor(ctx)
	if err != nil {
		return e2e.Result{Errors: 1, FirstErr: err}
	}
	conns, err := e2e.NewConns([]string{f.url}, "", b.o.Concurrency, 30*time.Second)
	if err != nil {
		return e2e.Result{Errors: 1, FirstErr: err}
	}
	defer e2e.CloseConns(conns)
	return b.timed(ctx, PhaseReadFloor, b.o.Progress, func(ctx context.Context, w, _ int) error {
		if len(b.allRows) == 0 {
			return errors.New("tokenize left no tokens to read")
		}
		_, err := conns[w].Call(ctx, http.MethodGet, "/tokens/"+b.allRows[mrand.IntN(len(b.allRows))].String(), nil, http.StatusOK)
		return err
	})
}
