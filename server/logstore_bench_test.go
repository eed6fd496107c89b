package server

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs appends one entry per StoreLogs call (a lone grant's
// batch entry, about 100 bytes) to each kind of log in a data dir of its
// own, as raft's leader and each follower do once per proposal when there is
// no load to group: raft-boltdb's bbolt transaction with two fdatasyncs
// against raft-wal's append and one. Besides ns/op it reports the p50 and
// p99 of the calls (the tail is the disk's). Figures:
// bench/results/design-measurements.md, "raft-wal as the log store".
func BenchmarkStoreLogs(b *testing.B) {
	for _, kind := range []string{RaftLogBoltDB, RaftLogWAL} {
		b.Run(kind, func(b *testing.B) {
			s, err := openDataStores(b.TempDir(), kind, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 100)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				l := &raft.Log{Index: uint64(i) + 1, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
				start := time.Now()
				if err := s.Log().StoreLogs([]*raft.Log{l}); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
