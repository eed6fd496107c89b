// Package snapshot is the file format of leasecluster's FSM snapshots: what a
// Raft snapshot of the lease table, the item store and the deduplication
// window looks like on disk and on the wire (InstallSnapshot streams it).
//
// The format, all integers big-endian unless noted:
//
//	magic    8 bytes  "LCSNAP\r\n" (the CR LF catches text-mode mangling)
//	version  4 bytes  format version, currently 1
//	records  each a uvarint length (1 to MaxRecordSize) followed by that many
//	         bytes of an encoded leasepb.SnapshotRecord, in this order:
//	         one header (index, term, and the count of each kind below),
//	         leases sorted by ID, items sorted by key, dedupe entries
//	         oldest first
//	end      one zero byte (a uvarint length of 0)
//	trailer  4 bytes  CRC-32C (Castagnoli) of every byte before it
//
// Nothing may follow the trailer. Write streams a Snapshot in this format;
// Read validates a whole stream (magic, version, record lengths, record order,
// counts, the consistency of leases and items, no field unknown to this build
// in any record, and the checksum) before it
// returns anything, so a caller can replace its state only with a snapshot
// that is known to be complete and intact. Inspect performs the same
// validation and returns a Summary instead of the contents.
//
// A lease record carries the lease's owner (lessor.LeaseState.Owner); a lease
// without one is written without the field, exactly as before owners existed,
// so older snapshots read with every owner empty.
//
// The header may carry a restore record (leasepb.SnapshotRestore, absent
// otherwise, so other snapshots keep their bytes): a snapshot made by
// Restored, which seeds a new cluster from a backup (`leasecluster snapshot
// restore`), names the backup (index, term, CRC-32C) and the grace its leases
// were given; the FSM keeps it and writes it into its later snapshots.
// Restored is deterministic: each lease's remainder becomes its remaining TTL
// at save time (checkpointed remainder, else TTL) plus the grace, and the
// index is raised to the highest revision, so the restored cluster's
// revisions continue above every restored one. SaveFile writes a backup
// atomically and keeps it only once Inspect has validated it.
//
// A Snapshot's contents are fully determined by the state it holds: the same
// state always writes the same bytes, so snapshots of replicas that agree
// compare equal.
package snapshot
