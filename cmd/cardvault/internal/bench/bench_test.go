package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	good := Options{Concurrency: 32, Duration: 10 * time.Second, Out: "x", ImportCards: 2000, ImportConcurrency: 16}
	require.NoError(t, good.Validate())
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"concurrency", func(o *Options) { o.Concurrency = 0 }},
		{"duration", func(o *Options) { o.Duration = time.Millisecond }},
		{"warmup", func(o *Options) { o.Warmup = -time.Second }},
		{"import-cards", func(o *Options) { o.ImportCards = 0 }},
		{"import-concurrency", func(o *Options) { o.ImportConcurrency = 1000 }},
		{"out", func(o *Options) { o.Out = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			assert.ErrorContains(t, o.Validate(), "--"+tc.name)
		})
	}
}
