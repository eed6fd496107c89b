//go:build !unix

package server

// lockFree cannot try bbolt's lock here (it is LockFileEx, not flock): the
// raft-wal open is then guarded only by raft.db's lock, opened first with a
// timeout.
func lockFree(string) (bool, error) { return true, nil }
