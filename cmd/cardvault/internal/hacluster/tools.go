package hacluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

// tools are the programs a cluster runs.
type tools struct {
	bin     string // PostgreSQL's server binaries (initdb, pg_ctl, postgres)
	autoctl string // pg_autoctl
}

// findTools finds the server binaries as pglocal does, pg_autoctl on $PATH
// or beside them, and the pgautofailover extension of that PostgreSQL
// version. It returns ErrNotInstalled when pg_auto_failover is missing and
// pglocal.ErrNoBinaries when PostgreSQL is.
func findTools() (tools, error) {
	bin, err := pglocal.FindBinDir()
	if err != nil {
		return tools{}, err
	}
	t := tools{bin: bin}
	if t.autoctl, err = exec.LookPath("pg_autoctl"); err != nil {
		t.autoctl = filepath.Join(bin, "pg_autoctl")
		if _, err := os.Stat(t.autoctl); err != nil {
			return tools{}, ErrNotInstalled
		}
	}
	lib, err := exec.Command(filepath.Join(bin, "pg_config"), "--pkglibdir").Output()
	if err != nil {
		return tools{}, fmt.Errorf("hacluster: %s --pkglibdir: %w", filepath.Join(bin, "pg_config"), err)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(lib)), "pgautofailover.so")); err != nil {
		return tools{}, fmt.Errorf("%w (no pgautofailover.so for the PostgreSQL in %s)", ErrNotInstalled, bin)
	}
	return t, nil
}

// env returns the environment of a pg_autoctl process for node n: only
// the server binaries on PATH (pg_autoctl wants exactly one pg_ctl), its
// configuration and state under the node's folder, and the cluster's
// socket folder as PGHOST.
func (c *Cluster) env(n *Node) []string {
	return []string{
		"PATH=" + c.tools.bin + ":/usr/bin:/bin",
		"HOME=" + n.dir,
		"LC_ALL=C",
		"XDG_CONFIG_HOME=" + filepath.Join(n.dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(n.dir, "share"),
		"PGDATA=" + n.pgdata(),
		"PGHOST=" + filepath.Join(c.Dir, socketDir),
	}
}

// pgdata returns the node's PostgreSQL data directory.
func (n *Node) pgdata() string { return filepath.Join(n.dir, "pgdata") }

// created reports whether pg_autoctl has made the node already: its
// configuration file exists.
func (c *Cluster) created(n *Node) bool {
	_, err := os.Stat(filepath.Join(n.dir, "config", "pg_autoctl", n.pgdata(), "pg_autoctl.cfg"))
	return err == nil
}
