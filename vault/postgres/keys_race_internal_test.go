package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/jackc/pgx/v5"
)

// PendingToken is a new token sealed with the tenant's keys as they were
// when SealToken ran, not yet written: a request held between "sealed with
// key N" and "committed", for the rotation race tests.
type PendingToken struct {
	s   *Service
	a   vault.Actor
	tk  *tenantKeys
	row tokenRow
	tok vault.Token
}

// SealToken seals in for a as Tokenize does, without writing it.
func SealToken(ctx context.Context, s *Service, a vault.Actor, in vault.TokenizeInput) (*PendingToken, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return nil, err
	}
	card, err := card.ParseCard(in.Card)
	if err != nil {
		return nil, err
	}
	fp, fpKey, err := tk.fingerprint(card.PAN)
	if err != nil {
		return nil, err
	}
	row, err := s.newTokenRow(tk, a.TenantID, in, card, fp, fpKey)
	if err != nil {
		return nil, err
	}
	tok, err := s.masked(tk, row)
	return &PendingToken{s: s, a: a, tk: tk, row: row, tok: tok}, err
}

// KeyID returns the id of the key that sealed the token.
func (p *PendingToken) KeyID() uint32 { return p.row.sealed.keyID }

// Commit writes the token the way Tokenize does (group commit, retried with
// the current keys when its key was retired) and returns its record.
func (p *PendingToken) Commit() (vault.Token, error) {
	_, _, err := p.s.insertTokenAudited(p.a, p.tk, p.row, p.tok)
	return p.tok, err
}

// InsertIn writes the token as it was sealed with insertTokensSQL and its audit row in
// tx, which the caller commits: a writer whose statement ran but whose
// transaction has not committed yet.
func (p *PendingToken) InsertIn(ctx context.Context, tx pgx.Tx) (vault.Token, error) {
	nt, err := p.s.prepareNewToken(p.a, p.tk, p.row, p.tok)
	if err != nil {
		return vault.Token{}, err
	}
	rows, err := tx.Query(ctx, insertTokensSQL, insertTokensArgs([]*newToken{nt})...)
	if err != nil {
		return vault.Token{}, err
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil || n == 0 {
		return p.tok, err
	}
	return p.tok, p.s.insertAudit(ctx, tx, nt.ev)
}
