package loop_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/internal/loop"
)

var (
	errTransient = errors.New("database failing over")
	errFinal     = errors.New("not yours any more")
)

func TestRetry(t *testing.T) {
	transient := func(err error) bool { return errors.Is(err, errTransient) }
	ended, end := context.WithCancel(context.Background())
	end()
	tests := []struct {
		name      string
		ctx       context.Context
		errs      []error // op's answers in turn; nil after the last
		want      error
		wantCalls int
	}{
		{"succeeds at once", context.Background(), nil, nil, 1},
		{"succeeds after transient failures", context.Background(), []error{errTransient, errTransient}, nil, 3},
		{"stops at a final failure", context.Background(), []error{errTransient, errFinal, errTransient}, errFinal, 2},
		{"tries once after the context ended", ended, []error{errTransient}, errTransient, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := loop.Retry(tt.ctx, transient, func(context.Context) error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			assert.ErrorIs(t, err, tt.want)
			if tt.want == nil {
				assert.NoError(t, err)
			}
			assert.Equal(t, tt.wantCalls, calls)
		})
	}
}
