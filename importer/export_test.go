package importer

import (
	"encoding/json"

	"github.com/google/uuid"
)

// CachedJobs returns the jobs whose decrypted credentials the runner holds.
func (r *Runner) CachedJobs() []uuid.UUID { return r.cachedJobs() }

// SkipReasonOf says why the payment method whose list JSON is pm is skipped
// during preparation, decoding it as customerItems does; it returns the
// decoding error.
func SkipReasonOf(pm []byte) (string, error) {
	var listed listedPaymentMethod
	err := json.Unmarshal(pm, &listed)
	return skipReason(listed), err
}
