package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// ARCHITECTURE.md: the client never imports raft (it speaks only the public API).
func TestNoRaftImport(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/leasecluster/leasecluster/client").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/hashicorp/raft") {
			t.Errorf("client depends on %s", dep)
		}
	}
}
