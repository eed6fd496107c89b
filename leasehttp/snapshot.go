package leasehttp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/leasecluster/leasecluster/snapshot"
)

// SnapshotTimeout bounds GET /v1/snapshot: finding the leader and receiving
// the whole snapshot. The node's http.Server write timeout bounds sending it
// on; `leasecluster snapshot save` (gRPC) has no such bound for large tables.
const SnapshotTimeout = 50 * time.Second

// snapshot answers GET /v1/snapshot: a consistent snapshot of the leader's
// state (client.Snapshot, followed to the leader like every call), in the
// snapshot file format. It is spooled to a temporary file and validated in
// full (snapshot.Inspect: every record and the checksum) before the first
// byte is answered, so the caller gets a complete, valid file with its
// Content-Length, or an error and no file. With TLS only admins may take one
// (403 otherwise).
func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), SnapshotTimeout)
	defer cancel()
	tmp, err := os.CreateTemp("", "leasecluster-snapshot-*")
	if err != nil {
		h.fail(w, err)
		return
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	info, err := h.cfg.Client.Snapshot(ctx, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		h.fail(w, err)
		return
	}
	sum, err := snapshot.Inspect(tmp)
	if err != nil {
		h.fail(w, fmt.Errorf("the leader's snapshot is not valid: %w", err))
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		h.fail(w, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.FormatInt(sum.Size, 10))
	hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="leasecluster-%d.snap"`, info.Index))
	hd.Set("Leasecluster-Snapshot-Index", strconv.FormatUint(sum.Index, 10))
	hd.Set("Leasecluster-Snapshot-Term", strconv.FormatUint(sum.Term, 10))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, tmp)
}
