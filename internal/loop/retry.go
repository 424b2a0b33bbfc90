package loop

import (
	"context"
	"time"
)

// Retry's backoff between attempts: first, doubled after each, capped.
const (
	retryFirst = 100 * time.Millisecond
	retryCap   = 2 * time.Second
)

// Retry calls op once, and again while it fails with an error retryable
// accepts and ctx has not ended, waiting 100 ms doubling to 2 s between
// attempts. It returns nil once op succeeds, else op's last error. op gets
// ctx, which may have ended already: a caller that must try once even on
// its way out (writing down what it already did) gives op a context of its
// own. For work whose outcome is known and must be written, such as an
// import attempt or a webhook delivery, while the database fails over.
func Retry(ctx context.Context, retryable func(error) bool, op func(context.Context) error) error {
	wait := retryFirst
	for {
		err := op(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		if Sleep(ctx, wait) != nil {
			return err
		}
		wait = min(2*wait, retryCap)
	}
}
