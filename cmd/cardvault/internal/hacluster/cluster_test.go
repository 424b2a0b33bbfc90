package hacluster

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestURLNamesEveryDataNode: the vault's URL lists every data node and asks
// for the writable one, so it follows a failover without a restart.
func TestURLNamesEveryDataNode(t *testing.T) {
	c := &Cluster{layout: layout{Database: "cardvault", MonitorPort: 5400, NodePorts: []int{5401, 5402, 5403}}, Dir: "/x"}
	c.nodes()
	assert.Equal(t, "postgres://postgres@127.0.0.1:5401,127.0.0.1:5402,127.0.0.1:5403/cardvault?target_session_attrs=read-write&sslmode=disable",
		c.URL("cardvault"))
	assert.Equal(t, "postgres://autoctl_node@127.0.0.1:5400/pg_auto_failover?sslmode=disable", c.MonitorURL())
	assert.Equal(t, []string{"node1", "node2", "node3"}, []string{c.Nodes[0].Name, c.Nodes[1].Name, c.Nodes[2].Name})
}

func TestNodeStateWritable(t *testing.T) {
	tests := []struct {
		reported, goal string
		want           bool
	}{
		{"primary", "primary", true},
		{"wait_primary", "wait_primary", true},
		{"single", "single", true},
		{"primary", "draining", false},
		{"secondary", "secondary", false},
		{"report_lsn", "prepare_promotion", false},
	}
	for _, tt := range tests {
		t.Run(tt.reported+"→"+tt.goal, func(t *testing.T) {
			assert.Equal(t, tt.want, NodeState{Reported: tt.reported, Goal: tt.goal}.writable())
		})
	}
}

// TestChmodTreeTakesAndGivesBackWritePermission: FailDisk's chmodTree
// takes the owner's write bit from every file and folder, RepairDisk's
// gives it back, leaving the other bits as they were.
func TestChmodTreeTakesAndGivesBackWritePermission(t *testing.T) {
	root := filepath.Join(t.TempDir(), "pgdata")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "base", "1"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(root, "base", "1", "1259"), nil, 0o640))
	modes := func() map[string]fs.FileMode {
		out := map[string]fs.FileMode{}
		require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			fi, _ := d.Info()
			out[p] = fi.Mode().Perm()
			return err
		}))
		return out
	}
	before := modes()
	require.NoError(t, chmodTree(root, 0, 0o200))
	for p, m := range modes() {
		assert.Equal(t, before[p]&^0o200, m, p)
	}
	require.NoError(t, chmodTree(root, 0o200, 0))
	assert.Equal(t, before, modes())
}
