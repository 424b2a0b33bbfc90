package postgres

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// ReplayIndexConds returns the index conditions on tokens in the plans of
// replayTokensSQL and insertTokensSQL for a replay of in by a, with
// sequential scans off (the test tables are small enough for one to win
// otherwise).
func ReplayIndexConds(ctx context.Context, s *Service, a vault.Actor, in vault.TokenizeInput) ([]string, error) {
	r := &replay{ev: s.event(a, vault.ActionTokenCreate, uuid.Nil, nil), businessKey: in.BusinessKey,
		digest: make([]byte, 32), metadata: []byte("{}"), hasCVC: true}
	rargs := replayArgs([]*replay{r})
	nt, err := testNewToken(ctx, s, a, in)
	if err != nil {
		return nil, err
	}
	var conds []string
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{{replayTokensSQL, rargs}, {insertTokensSQL, insertTokensArgs([]*newToken{nt, nt})}} {
			var plan []byte
			if err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+q.sql, q.args...).Scan(&plan); err != nil {
				return err
			}
			var doc any
			if err := json.Unmarshal(plan, &doc); err != nil {
				return err
			}
			conds = append(conds, tokenIndexConds(doc)...)
		}
		return nil
	})
	return conds, err
}

// tokenIndexConds returns the index conditions of the scans of tokens in
// an EXPLAIN (FORMAT JSON) document.
func tokenIndexConds(doc any) []string {
	var out []string
	walkPlan(doc, func(n map[string]any) {
		if c, ok := n["Index Cond"].(string); ok && fmtAny(n["Relation Name"]) == "tokens" {
			out = append(out, c)
		}
	})
	return out
}

// walkPlan calls visit for every node of an EXPLAIN (FORMAT JSON) document.
func walkPlan(v any, visit func(map[string]any)) {
	switch n := v.(type) {
	case map[string]any:
		visit(n)
		for _, x := range n {
			walkPlan(x, visit)
		}
	case []any:
		for _, x := range n {
			walkPlan(x, visit)
		}
	}
}

// testNewToken prepares in as a new token of a, ready for a batch.
func testNewToken(ctx context.Context, s *Service, a vault.Actor, in vault.TokenizeInput) (*newToken, error) {
	c, err := card.ParseCard(in.Card)
	if err != nil {
		return nil, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return nil, err
	}
	fp, fpKey, err := tk.fingerprint(c.PAN)
	if err != nil {
		return nil, err
	}
	row, err := s.newTokenRow(tk, a.TenantID, in, c, fp, fpKey)
	if err != nil {
		return nil, err
	}
	tok, err := s.masked(tk, row)
	if err != nil {
		return nil, err
	}
	return s.prepareNewToken(a, tk, row, tok)
}

// fmtAny returns v when it is a string, else "".
func fmtAny(v any) string {
	s, _ := v.(string)
	return s
}

// TokenizeWithRandomID stores in as a new token under a random (version 4)
// id, as tokens were made before ids were time-ordered, and returns the id.
func TokenizeWithRandomID(ctx context.Context, s *Service, a vault.Actor, in vault.TokenizeInput) (uuid.UUID, error) {
	c, err := card.ParseCard(in.Card)
	if err != nil {
		return uuid.Nil, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return uuid.Nil, err
	}
	fp, fpKey, err := tk.fingerprint(c.PAN)
	if err != nil {
		return uuid.Nil, err
	}
	row, err := s.newTokenRow(tk, a.TenantID, in, c, fp, fpKey)
	if err != nil {
		return uuid.Nil, err
	}
	row.ID = uuid.New()
	if row, err = s.withCard(tk, row, c, fp, fpKey); err != nil { // sealed again, bound to the new id
		return uuid.Nil, err
	}
	tok, err := s.masked(tk, row)
	if err != nil {
		return uuid.Nil, err
	}
	_, _, err = s.insertTokenAudited(a, tk, row, tok)
	return row.ID, err
}
