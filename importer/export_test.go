package importer

import "github.com/google/uuid"

// CachedJobs returns the jobs whose decrypted credentials the runner holds.
func (r *Runner) CachedJobs() []uuid.UUID { return r.cachedJobs() }

// SkipReason says why a payment method is skipped during preparation.
var SkipReason = skipReason
