package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// BatchLookup is one request of a batch built by a test: an actor asking
// for a token.
type BatchLookup struct {
	Actor   vault.Actor
	TokenID uuid.UUID
}

// ReadBatch reads reqs as one batch through readTokens, as concurrent
// requests would. It returns, per request, whether its token was found.
func ReadBatch(ctx context.Context, s *Service, reqs []BatchLookup) ([]bool, error) {
	batch, err := testLookups(ctx, s, vault.ActionTokenRead, reqs)
	if err != nil {
		return nil, err
	}
	if err := s.readTokens(batch); err != nil {
		return nil, err
	}
	found := make([]bool, len(batch))
	for i, l := range batch {
		found[i] = l.found
	}
	return found, nil
}

// ReadBatchChained reads reqs as one batch through readTokensChained only,
// the one-statement write after idle lane heads. It returns, per request,
// whether its token was found, and ErrNotChained when the batch could not
// be written so (it then wrote nothing).
func ReadBatchChained(ctx context.Context, s *Service, reqs []BatchLookup) ([]bool, error) {
	batch, err := testLookups(ctx, s, vault.ActionTokenRead, reqs)
	if err != nil {
		return nil, err
	}
	err = s.readTokensChained(ctx, batch)
	found := make([]bool, len(batch))
	for i, l := range batch {
		found[i] = l.found && err == nil
	}
	return found, err
}

// ErrNotChained is errNotChained, for tests.
var ErrNotChained = errNotChained

// ReaderLane returns the lane s's read batches lock first: the one of the
// upper half that its turn puts first.
func ReaderLane(s *Service) int64 {
	half := auditLaneCount / 2
	for l := half; l < auditLaneCount; l++ {
		if (l+s.audit.readerTurn)%half == half-1 {
			return int64(l)
		}
	}
	panic("no reader lane")
}

// SetReaderTurn sets s's turn of the reader lanes (picked at random when
// the service starts).
func SetReaderTurn(s *Service, turn int) { s.audit.readerTurn = turn }

// RevealBatch reveals reqs as one batch through revealTokens. It returns,
// per request, whether its token was found and the card revealed, and the
// batch's error (ErrRevealBatch when it rolled back for one request's sake).
func RevealBatch(ctx context.Context, s *Service, reqs []BatchLookup) ([]bool, []vault.Revealed, error) {
	batch, err := testLookups(ctx, s, vault.ActionTokenReveal, reqs)
	if err != nil {
		return nil, nil, err
	}
	err = s.revealTokens(batch)
	found, out := make([]bool, len(batch)), make([]vault.Revealed, len(batch))
	for i, l := range batch {
		found[i], out[i] = l.found, l.out
	}
	return found, out, err
}

// ErrRevealBatch is errRevealBatch, for tests.
var ErrRevealBatch = errRevealBatch

func testLookups(ctx context.Context, s *Service, action vault.Action, reqs []BatchLookup) ([]*lookup, error) {
	batch := make([]*lookup, len(reqs))
	for i, r := range reqs {
		tk, err := s.keys.get(ctx, r.Actor.TenantID)
		if err != nil {
			return nil, err
		}
		batch[i] = &lookup{ev: s.event(r.Actor, action, r.TokenID, nil), tk: tk}
	}
	return batch, nil
}
