// Package layout holds the test that keeps the package layout's import
// rules true (see the README's Layout section).
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cardvault/cardvault"

// deps returns every package pkg imports, directly or not, by asking the go
// command.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestImportRules fails when a package imports what its place in the layout
// forbids: the card logic stands alone, the vocabulary holds no SQL, the
// callers depend on the vocabulary's interfaces and never on the PostgreSQL
// implementation (only cmd wires it in), the metrics vocabulary imports
// nothing of the vault (every package records through it), the pacer knows
// no job or database (its callers reserve the slots), and nothing imports
// httpapi or cmd.
func TestImportRules(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string // import path prefixes
	}{
		{"/vault/card", []string{module + "/", "github.com/jackc/", "github.com/tink-crypto/"}},
		{"/vault", []string{module + "/vault/postgres", module + "/crypto", module + "/httpapi", "github.com/jackc/", "github.com/tink-crypto/"}},
		{"/httpapi", []string{module + "/vault/postgres", module + "/cmd"}},
		{"/httpapi/console", []string{module + "/vault/postgres", module + "/crypto", module + "/importer", module + "/webhook", module + "/cmd", "github.com/jackc/", "github.com/tink-crypto/"}},
		{"/importer", []string{module + "/vault/postgres", module + "/httpapi", module + "/cmd"}},
		{"/exporter", []string{module + "/vault/postgres", module + "/httpapi", module + "/importer", module + "/cmd"}},
		{"/webhook", []string{module + "/vault/postgres", module + "/httpapi", module + "/cmd"}},
		{"/vault/postgres", []string{module + "/httpapi", module + "/importer", module + "/cmd"}},
		{"/crypto", []string{module + "/vault", module + "/httpapi", module + "/cmd"}},
		{"/egress", []string{module + "/", "github.com/jackc/"}},
		{"/forwarding", []string{module + "/vault/postgres", module + "/httpapi", module + "/importer", module + "/cmd", "github.com/jackc/"}},
		{"/internal/metrics", []string{module + "/"}},
		{"/internal/pace", []string{module + "/vault", module + "/crypto", module + "/httpapi", module + "/importer", module + "/exporter", module + "/cmd", "github.com/jackc/"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, module+r.pkg) {
			if d == module+r.pkg || (r.pkg == "/vault" && d == module+"/vault/card") || (r.pkg == "/egress" && d == module+"/egress") {
				continue
			}
			for _, f := range r.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s, which its place in the layout forbids", r.pkg, d)
				}
			}
		}
	}
}

// TestNothingImportsHTTPAPIOrCmd fails when a package other than cmd's
// imports httpapi, or anything imports a cmd package. Tests may stand up the
// real HTTP server (the importer's end-to-end test forwards into it), but
// never import cmd.
func TestNothingImportsHTTPAPIOrCmd(t *testing.T) {
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}}|{{join .Imports " "}}|{{join .TestImports " "}} {{join .XTestImports " "}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, "|", 3)
		owner, underCmd := parts[0], strings.HasPrefix(parts[0], module+"/cmd/")
		for _, imp := range strings.Fields(parts[1]) {
			if !underCmd && (imp == module+"/httpapi" || strings.HasPrefix(imp, module+"/cmd/")) {
				t.Errorf("%s imports %s: only cmd wires httpapi in", owner, imp)
			}
		}
		for _, imp := range strings.Fields(parts[2]) {
			if !underCmd && strings.HasPrefix(imp, module+"/cmd/") {
				t.Errorf("%s's tests import %s: nothing imports cmd", owner, imp)
			}
		}
	}
}
