package leasecluster_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The import rules of ARCHITECTURE.md that matter: the lease table and the
// request limits use only the standard library, the client library never
// imports raft (clients must not drag in the server), and nothing imports
// the command.
func TestImportRules(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	mod := "github.com/leasecluster/leasecluster/"
	for _, pkg := range []string{"lessor", "limits"} {
		if d := deps(mod + pkg); len(d) != 1 {
			t.Errorf("%s must import only the standard library, imports %v", pkg, d[:len(d)-1])
		}
	}
	for _, pkg := range []string{"client", "client/clienttest", "lessor", "leasepb", "snapshot"} {
		for _, d := range deps(mod + pkg) {
			if strings.HasPrefix(d, "github.com/hashicorp/raft") {
				t.Errorf("%s imports %s", pkg, d)
			}
		}
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}} {{join .TestImports " "}}`, "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " "+mod+"cmd/") {
			t.Errorf("a package imports a command: %s", line)
		}
	}
}
