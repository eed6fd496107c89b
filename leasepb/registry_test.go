package leasepb_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/leasecluster/leasecluster/leasepb"
)

// Protobuf registers every file by its path in one process-wide registry.
// Bare names such as "raft.proto" collide with other projects' files (etcd's
// raftpb registers "raft.proto"), and a program linking both panics at start.
// Ours must live under leasecluster/v1/.
func TestFilesRegisterUnderTheirPackagePath(t *testing.T) {
	found := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if fd.Package() != "leasecluster.v1" {
			return true
		}
		found++
		if !strings.HasPrefix(fd.Path(), "leasecluster/v1/") {
			t.Errorf("%s registers as %q, want leasecluster/v1/...", fd.Package(), fd.Path())
		}
		return true
	})
	if found != 5 {
		t.Fatalf("found %d leasecluster.v1 files, want 5 (api, commands, snapshot, raft, maintenance)", found)
	}
}
