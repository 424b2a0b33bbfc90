package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/vault"
)

// An update batch writes what its requests change as sets, not request by
// request: one statement keeps every replaced card as a version (in the
// order the requests replaced them), writes each token's last card once,
// and enqueues every token.updated webhook event; one more inserts every
// audit row, chained on the lanes locked in the first round trip
// (insertAuditRowsSQL); then COMMIT, all in one round trip.

// updateSetSQL writes an update batch's sets: $1–$15 the replaced cards
// as versions (versionArgs' columns), $16–$33 the tokens' new cards
// (cardArgs' columns, one row per token), $34–$37 the webhook events (id,
// tenant, sealed data, key id; written only for a tenant with a webhook)
// and $38 their type. It answers the ids of the events written.
var updateSetSQL = `
	WITH v AS (
		INSERT INTO token_versions (` + versionColumns + `)
		SELECT ` + versionColumns + `
		FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bigint[],
		            $8::text[], $9::text[], $10::smallint[], $11::text[], $12::smallint[], $13::smallint[],
		            $14::timestamptz[], $15::timestamptz[]) WITH ORDINALITY
		AS v(` + versionColumns + `, ord)
		ORDER BY ord
	), t AS (
		UPDATE tokens k SET fingerprint = u.fingerprint, fingerprint_key_id = u.fingerprint_key_id,
		       key_id = u.key_id, pan_ct = u.pan_ct, name_ct = u.name_ct, cvc_ct = u.cvc_ct,
		       cvc_expires_at = u.cvc_expires_at, iin = u.iin, last_four = u.last_four,
		       pan_length = u.pan_length, scheme = u.scheme, exp_month = u.exp_month,
		       exp_year = u.exp_year, metadata = u.metadata, updated_at = u.updated_at,
		       card_digest = u.card_digest
		FROM unnest($16::uuid[], $17::uuid[], $18::bytea[], $19::bigint[], $20::bigint[], $21::bytea[],
		            $22::bytea[], $23::bytea[], $24::timestamptz[], $25::text[], $26::text[],
		            $27::smallint[], $28::text[], $29::smallint[], $30::smallint[], $31::jsonb[],
		            $32::timestamptz[], $33::bytea[])
		AS u(id, tenant_id, fingerprint, fingerprint_key_id, key_id, pan_ct, name_ct, cvc_ct,
		     cvc_expires_at, iin, last_four, pan_length, scheme, exp_month, exp_year, metadata,
		     updated_at, card_digest)
		WHERE k.id = u.id AND k.tenant_id = u.tenant_id
		RETURNING k.id, k.cvc_ct IS NOT NULL AS has_cvc, k.cvc_expires_at
	), c AS (
		` + queueCVCExpiries("t WHERE has_cvc") + `
	), e AS (
		INSERT INTO webhook_events (id, tenant_id, type, payload, payload_ct, key_id)
		SELECT e.id, w.tenant_id, $38::text, NULL::jsonb, e.ct, e.key_id
		FROM unnest($34::text[], $35::uuid[], $36::bytea[], $37::bigint[]) AS e(id, tenant_id, ct, key_id)
		JOIN webhooks w ON w.tenant_id = e.tenant_id
		RETURNING id
	)
	SELECT id FROM e`

// Column counts of updateSetSQL's three sets.
const (
	versionArgCount = 15
	cardArgCount    = 18
	eventArgCount   = 4
)

// requestWrites is what one request of an update batch writes (a
// tokenWriter), kept apart until the request is settled.
type requestWrites struct {
	now      func() time.Time
	versions [][]any
	card     *tokenRow
	audits   []vault.AuditEvent
}

func (r *requestWrites) keepVersion(_ context.Context, old tokenRow) error {
	r.versions = append(r.versions, versionArgs(old, r.now()))
	return nil
}

func (r *requestWrites) updateCard(_ context.Context, row tokenRow) error {
	r.card = &row
	return nil
}

func (r *requestWrites) audit(_ context.Context, ev vault.AuditEvent) error {
	r.audits = append(r.audits, ev)
	return nil
}

// updateWrites is what a batch writes: its sets, and which request each
// webhook event is of.
type updateWrites struct {
	versions [][]any
	cards    [][]any
	cardOf   map[uuid.UUID]int // token id → its row in cards
	audits   []vault.AuditEvent
	events   [][]any
	eventOf  map[string]*tokenUpdate
}

// add adds a settled request's writes (r, and its webhook event ev when
// it has one) to w. A token's later card replaces its earlier one. It
// returns the error of encoding the card's metadata.
func (w *updateWrites) add(u *tokenUpdate, r *requestWrites, ev *sealedEvent) error {
	if r.card != nil {
		args, err := cardArgs(*r.card)
		if err != nil {
			return err
		}
		if i, ok := w.cardOf[r.card.ID]; ok {
			w.cards[i] = args
		} else {
			w.cardOf[r.card.ID] = len(w.cards)
			w.cards = append(w.cards, args)
		}
	}
	w.versions = append(w.versions, r.versions...)
	w.audits = append(w.audits, r.audits...)
	if ev != nil {
		w.events = append(w.events, []any{ev.id, u.out.TenantID, ev.ct, int64(ev.keyID)})
		w.eventOf[ev.id] = u
	}
	return nil
}

// buildUpdates reconciles each request of batch in order against the
// token as locked or as the requests before it left it, and returns their
// writes. A request it cannot settle is marked alone and writes nothing.
func (s *Service) buildUpdates(ctx context.Context, batch []*tokenUpdate, locked map[tokenKey]tokenRow) *updateWrites {
	w := &updateWrites{cardOf: map[uuid.UUID]int{}, eventOf: map[string]*tokenUpdate{}}
	for _, u := range batch {
		k := tokenKey{u.a.TenantID, u.row.BusinessKey}
		existing, ok := locked[k]
		if !ok {
			u.alone = true // vanished: reconcile answers errRaced
			continue
		}
		r := &requestWrites{now: s.clock}
		out, ev, err := s.reconcileLocked(ctx, r, u.a, u.tk, existing, u.row, u.card, func(scope vault.Scope) error {
			if u.a.Can(scope) {
				return nil
			}
			return errReconcileAlone // Require audits the denial
		})
		var sealed *sealedEvent
		if err == nil && ev != nil {
			if sealed, err = s.sealTokenEvent(u.tk, out); err == nil {
				r.audits = append(r.audits, *ev)
				u.eventKey = sealed.keyID
			}
		}
		u.out = out
		if err == nil {
			err = w.add(u, r, sealed)
		}
		if err != nil {
			u.out, u.alone = tokenRow{}, true
			continue
		}
		locked[k] = out
	}
	return w
}

// send writes w, its audit rows chained on the lanes l locked, and
// commits, in one round trip, and records which requests enqueued a
// webhook event.
func (w *updateWrites) send(ctx context.Context, conn *pgxpool.Conn, l updateLocks, now time.Time) error {
	var b pgx.Batch
	n := w.queue(&b)
	if len(w.audits) > 0 {
		aw, err := chainEvents(w.audits, l.heads, l.keys)
		if err != nil {
			return err
		}
		aw.queue(&b, now)
	}
	b.Queue("COMMIT")
	return readCommit(conn.SendBatch(ctx, &b), w, n, b.Len())
}

// queue adds updateSetSQL with w's sets to b, when it has any, and returns
// how many statements it added (batchWrite).
func (w *updateWrites) queue(b *pgx.Batch) int {
	if len(w.versions)+len(w.cards)+len(w.events) == 0 {
		return 0
	}
	args := append(columnsOf(w.versions, versionArgCount), columnsOf(w.cards, cardArgCount)...)
	args = append(args, columnsOf(w.events, eventArgCount)...)
	b.Queue(updateSetSQL, append(args, string(vault.EventTokenUpdated))...)
	return 1
}

// read reads updateSetSQL's answer, the ids of the events written, and
// records which requests enqueued one (batchWrite). It returns the
// driver's error.
func (w *updateWrites) read(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	written, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, id := range written {
		if u := w.eventOf[id]; u != nil {
			u.enqueued = true
		}
	}
	return nil
}

// columnsOf lays rows of n values each out as n columns (each a []any),
// the arrays an unnest reads.
func columnsOf(rows [][]any, n int) []any {
	cols := make([]any, n)
	for i := range cols {
		col := make([]any, len(rows))
		for j, r := range rows {
			col[j] = r[i]
		}
		cols[i] = col
	}
	return cols
}
