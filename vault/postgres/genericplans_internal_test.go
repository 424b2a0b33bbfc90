package postgres

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/jackc/pgx/v5"
)

// groupCommittedStatements are, by name, the statements the group commits
// run after genericPlansSQL in their transactions.
var groupCommittedStatements = map[string]string{
	"new tokens": insertTokensSQL, "replays": replayTokensSQL, "reads redone": readTokensSQL,
	"reveals": revealTokensSQL, "audit rows": insertAuditRowsSQL, "audit lanes": lockLanesSQL[writerLanes],
	"audit lane": lockLaneSQL[writerLanes], "update locks": lockTokensSQL, "update writes": updateSetSQL,
	"forward locks": lockForwardsSQL, "forward destinations": batchDestinationsSQL,
	"forward writes": writeForwardsSQL, "import attempts": writeAttemptsSQL,
}

// WholeReads returns, by statement name, the scans of the generic plan
// conn makes for each statement the group commits run after
// genericPlansSQL that read a whole table or index: a sequential scan, or
// an index scan without an index condition. Each is planned in a
// transaction that is rolled back. It returns the first database error.
func WholeReads(ctx context.Context, conn *pgx.Conn) (map[string][]string, error) {
	out := map[string][]string{}
	for name, sql := range groupCommittedStatements {
		doc, err := genericPlan(ctx, conn, sql)
		if err != nil {
			return nil, err
		}
		walkPlan(doc, func(n map[string]any) {
			scan := fmtAny(n["Node Type"])
			if scan == "Seq Scan" || strings.Contains(scan, "Index") && n["Index Cond"] == nil {
				out[name] = append(out[name], scan+" on "+fmtAny(n["Relation Name"])+fmtAny(n["Index Name"]))
			}
		})
	}
	return out, nil
}

// genericPlan returns, as EXPLAIN (FORMAT JSON) answers it, the plan conn
// makes for sql after genericPlansSQL, every parameter NULL, in a
// transaction it rolls back.
func genericPlan(ctx context.Context, conn *pgx.Conn, sql string) (any, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
	if _, err := tx.Exec(ctx, genericPlansSQL); err != nil {
		return nil, err
	}
	sd, err := tx.Prepare(ctx, "generic_plan", sql)
	if err != nil {
		return nil, err
	}
	defer conn.Deallocate(ctx, sd.Name) //nolint:errcheck // prepared statements outlive transactions
	args := strings.TrimSuffix(strings.Repeat("NULL, ", len(sd.ParamOIDs)), ", ")
	var plan []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) EXECUTE "+sd.Name+"("+args+")").Scan(&plan); err != nil {
		return nil, err
	}
	var doc any
	return doc, json.Unmarshal(plan, &doc)
}
