package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// makeCmd returns `make args…` run at the repository root, skipping t
// when make is missing.
func makeCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	cmd := exec.Command("make", args...)
	cmd.Dir = vaulttest.RepoRoot(t)
	cmd.Env = append(os.Environ(), "GOPROXY=off")
	return cmd
}

// TestMakeDevSaysItIsBuildingThenRunsTheBinary: the first `make dev`
// compiles for minutes, so it says so first, then runs the built binary
// (whose printed commands name a file that stays).
func TestMakeDevSaysItIsBuildingThenRunsTheBinary(t *testing.T) {
	out, err := makeCmd(t, "-n", "dev").CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(string(out), "\n")
	say := indexOf(lines, `echo "building cardvault (first run takes a few minutes)…"`)
	build := indexOf(lines, "go build -o bin/cardvault ./cmd/cardvault")
	runDev := indexOf(lines, "bin/cardvault dev")
	require.True(t, say >= 0 && build >= 0 && runDev >= 0, "%s", out)
	assert.Less(t, say, build, "the line comes before the build")
	assert.Less(t, build, runDev)
	assert.NotContains(t, string(out), "go run", "go run would print nothing while it compiles")
}

// indexOf returns the index of the first line that starts with prefix, or -1.
func indexOf(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return i
		}
	}
	return -1
}

// TestMakeInstallSaysWhereCardvaultWent installs into a GOBIN of the test's
// own and runs the installed binary.
func TestMakeInstallSaysWhereCardvaultWent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := t.TempDir()
	cmd := makeCmd(t, "install")
	cmd.Env = append(cmd.Env, "GOBIN="+bin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "installed "+filepath.Join(bin, "cardvault")+"\n")
	assert.Contains(t, string(out), bin+" is not on your PATH; add it: export PATH=\"$PATH:"+bin+"\"")
	version, err := exec.Command(filepath.Join(bin, "cardvault"), "version").Output()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(version), "cardvault "), "%s", version)
}
