package postgres

import (
	"context"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/jackc/pgx/v5"
)

// maxActivityDays is the longest window Activity reports.
const maxActivityDays = 90

// activitySQL counts, per UTC day from $2, the tenant $1's tokens created
// (among those still held), the cards its import jobs started that day
// imported, and its failed or refused actions (through the partial index
// audit_events_tenant_errors); a row counting repeated refusals (see
// RecordAccessFailure) counts each of them.
const activitySQL = `
	SELECT day, sum(tokens)::bigint, sum(imported)::bigint, sum(errors)::bigint FROM (
		SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS tokens, 0 AS imported, 0 AS errors
		FROM tokens WHERE tenant_id = $1 AND created_at >= $2 GROUP BY 1
		UNION ALL
		SELECT (created_at AT TIME ZONE 'UTC')::date, 0, sum(successes), 0
		FROM import_jobs WHERE tenant_id = $1 AND created_at >= $2 GROUP BY 1
		UNION ALL
		SELECT (occurred_at AT TIME ZONE 'UTC')::date, 0, 0,
		       sum(CASE WHEN action IN ('auth.failed', 'auth.denied', 'access.failed', 'access.throttled')
		                THEN coalesce((detail->>'count')::bigint, 1) ELSE 1 END)
		FROM audit_events WHERE tenant_id = $1 AND outcome <> 'success' AND occurred_at >= $2 GROUP BY 1
	) d GROUP BY day`

// Activity returns the actor's tenant's activity per UTC day over the last
// days days (today included), every day present, oldest first. It returns
// a KindBadRequest error for days outside 1–90 and a domain error when the
// database fails.
func (s *Service) Activity(ctx context.Context, a vault.Actor, days int) (vault.ActivityReport, error) {
	if days < 1 || days > maxActivityDays {
		return vault.ActivityReport{}, vault.Errorf(vault.KindBadRequest, vault.CodeParameterInvalid,
			"days must be a whole number from 1 to %d", maxActivityDays)
	}
	r := vault.ActivityReport{Days: activityDays(s.clock(), days)}
	byDay := make(map[time.Time]*vault.ActivityDay, days)
	for i := range r.Days {
		byDay[r.Days[i].Day] = &r.Days[i]
	}
	err := s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, activitySQL, a.TenantID, r.Days[0].Day)
		if err != nil {
			return err
		}
		var day vault.ActivityDay
		_, err = pgx.ForEachRow(rows, []any{&day.Day, &day.Tokens, &day.Imported, &day.Errors}, func() error {
			if d, ok := byDay[day.Day.UTC()]; ok {
				d.Tokens, d.Imported, d.Errors = day.Tokens, day.Imported, day.Errors
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE tenant_id = $1`, a.TenantID).Scan(&r.TokensHeld)
	})
	return r, err
}

// activityDays returns the days UTC midnights ending with now's, oldest
// first.
func activityDays(now time.Time, days int) []vault.ActivityDay {
	today := now.UTC().Truncate(24 * time.Hour)
	out := make([]vault.ActivityDay, days)
	for i := range out {
		out[i].Day = today.AddDate(0, 0, i-days+1)
	}
	return out
}
