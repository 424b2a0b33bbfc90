package pglocal

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPrepareDir: a directory the server account can reach is used as it
// is; as root, one it cannot reach (behind a root directory of mode 0700) moves to
// /tmp/cardvault-<hash>, named in RelocatedFile. Either way the account
// owns the directory.
func TestPrepareDir(t *testing.T) {
	acct, err := ServerAccount()
	if err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	blocked := filepath.Join(t.TempDir(), "blocked")
	if err := os.Mkdir(blocked, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		dir           string
		wantRelocated bool
	}{
		{"reachable", filepath.Join(reachableTempDir(t), "cluster"), false},
		{"behind a 0700 directory", filepath.Join(blocked, "cluster"), root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, note, err := acct.PrepareDir(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if path != tt.dir {
				t.Cleanup(func() { os.RemoveAll(path) })
			}
			if got := path != tt.dir; got != tt.wantRelocated {
				t.Fatalf("PrepareDir(%s) = %s (note %q); relocated %v, want %v", tt.dir, path, note, got, tt.wantRelocated)
			}
			if tt.wantRelocated {
				b, err := os.ReadFile(filepath.Join(tt.dir, RelocatedFile))
				if err != nil || strings.TrimSpace(string(b)) != path || !strings.HasPrefix(path, "/tmp/cardvault-") || note == "" {
					t.Fatalf("relocated to %s: %s names %q (%v), note %q", path, RelocatedFile, b, err, note)
				}
			}
			assertOwner(t, path, acct)
		})
	}
}

// assertOwner checks that the account owns path (the caller, when not root).
func assertOwner(t *testing.T, path string, acct Account) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	want := uint32(os.Geteuid())
	if c := acct.Credential(); c != nil {
		want = c.Uid
	}
	if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
		t.Fatalf("%s is owned by uid %d, want %d (%s)", path, got, want, acct.Name())
	}
}
