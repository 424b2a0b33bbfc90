package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionReadsTheBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"released, from a clean checkout", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-11-22T15:16:55Z"}, {Key: "vcs.modified", Value: "false"}}},
			"cardvault v1.2.0\ncommit    0123abcd (2026-11-22T15:16:55Z)\ngo        go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"},
		{"local build with changes", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-11-22T15:16:55Z"}, {Key: "vcs.modified", Value: "true"}}},
			"cardvault (devel)\ncommit    0123abcd (2026-11-22T15:16:55Z), with uncommitted changes\ngo        go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"},
		{"no VCS stamp", debug.BuildInfo{GoVersion: "go1.26.8"},
			"cardvault (devel)\ncommit    unknown (built without VCS information, e.g. -buildvcs=false or outside a git checkout)\ngo        go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, printVersion(&out, buildVersion(&tt.info)))
			assert.Equal(t, tt.want, out.String())
		})
	}
}

func TestVersionCommand(t *testing.T) {
	out, _, err := run(t, "version")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "cardvault "), out)
	assert.Contains(t, out, "go        "+runtime.Version(), "the Go version of this binary")
}
