package server

import "github.com/hashicorp/raft"

// logCacheSize is how many of the newest entries raft.LogCache keeps in
// memory, for the replication to followers that are up to date (it reads
// the entries just written) without a read of the log store. Consul's
// servers keep 512 (raftLogCacheSize); a follower further behind reads
// raft-wal's segments, which the page cache holds. The entries' data stays
// in memory as long as they are cached: at 100,000 leases granted in batch
// entries, 1,024 of them held 3.5 MB.
const logCacheSize = 512

// newLogCache is raft.LogCache over store, fed copies of the entries raft
// stores. On the leader, raft passes StoreLogs pointers into its apply
// futures (&future.log), and the cache would keep those pointers: each kept
// the whole future alive, with its response, a batch entry's results, one
// per grant of the entry. With the cache full of batch entries that was
// 1,024 entries' results (the size then), about 13 MB at 100,000 leases granted by 512
// clients (a third of the leader's heap then), counted as memory per lease
// (bench/results/design-measurements.md, "server: the log cache kept apply
// results"). A copy of a raft.Log shares its Data and drops the future.
func newLogCache(store raft.LogStore) (raft.LogStore, error) {
	c, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return nil, err
	}
	return copyingLogStore{c}, nil
}

// copyingLogStore passes its store copies of the entries it is given.
type copyingLogStore struct{ raft.LogStore }

func (s copyingLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s copyingLogStore) StoreLogs(logs []*raft.Log) error {
	copies := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		copies[i] = *l
		ptrs[i] = &copies[i]
	}
	return s.LogStore.StoreLogs(ptrs)
}

// IsMonotonic passes on the store's answer (raft.MonotonicLogStore): raft
// must know that raft-wal takes no gaps.
func (s copyingLogStore) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
