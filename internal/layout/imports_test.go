package layout_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The import rules of ARCHITECTURE.md that matter: the lease table and the
// request limits use only the standard library, the client library never
// imports raft (clients must not drag in the server), nothing imports the
// command, and the fault injection reaches only the chaos build of the binary.
func TestImportRules(t *testing.T) {
	deps := func(pkg string, flags ...string) []string {
		args := append(append([]string{"list", "-deps"}, flags...), "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	mod := "github.com/leasecluster/leasecluster/"
	for _, pkg := range []string{"lessor", "limits", "certs"} {
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
	faults := mod + "internal/faults"
	if slices.Contains(deps(mod+"cmd/leasecluster"), faults) {
		t.Errorf("the normal build of the binary links %s: fault paths must exist only under the chaos tag", faults)
	}
	if !slices.Contains(deps(mod+"cmd/leasecluster", "-tags", "chaos"), faults) {
		t.Errorf("the chaos build of the binary does not link %s: the harness's fault controls are gone", faults)
	}
	out, err := exec.Command("go", "list", "-tags", "chaos", "-f", `{{.ImportPath}}: {{join .Imports " "}} {{join .TestImports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " "+mod+"cmd/") {
			t.Errorf("a package imports a command: %s", line)
		}
		if strings.Contains(line, " "+faults) && !strings.HasPrefix(line, mod+"cmd/leasecluster:") {
			t.Errorf("only cmd/leasecluster may import %s: %s", faults, line)
		}
	}
}
