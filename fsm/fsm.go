// Package fsm is leasecluster's replicated state machine: the raft.FSM (and
// raft.BatchingFSM) that decodes the commands of the Raft log and applies them,
// in log order and without reading a clock, to the lease table (a
// lessor.Lessor) and to the item store it owns. Every replica that applies the
// same entries holds the same state, which StateHash summarises.
//
// The leader builds entries with the Encode* functions, which validate their
// input with the same checks Apply makes. Apply returns a *Result for every
// command entry; Result.Err carries this package's or the lessor's sentinel
// errors. Requests that carry a request ID are deduplicated within a bounded
// window, so a client may retry after raft.ErrLeadershipLost. Snapshots use
// the format of package snapshot. DESIGN.md explains the command format,
// versioning, deduplication and why an undecodable entry stops the node.
package fsm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/snapshot"
)

// DedupeWindow is how many request IDs an FSM remembers. The window is
// replicated state (which retries replay, what snapshots and the state hash
// hold), so its size is a constant of the replicated format, not a setting:
// replicas with different windows would answer the same retry differently.
// Changing it is a format change.
const DedupeWindow = 10000

// Config configures an FSM. Nothing in it reaches the replicated state:
// every replica applies the same log to the same state whatever its config
// (the lessor's own config does not reach it either; see lessor.Config).
// The one exception is BeforeExpiryRevoke, a fault point that only the chaos
// build sets, the same on every replica.
type Config struct {
	// Lessor is the lease table; required. New installs the FSM's range
	// deleter on it so that revokes delete items from the item store.
	Lessor lessor.Lessor
	// Logger receives the FSM's logs. Default: discard.
	Logger hclog.Logger
	// OnFatal is called when a log entry cannot be decoded. Default: log at
	// Error (and to stderr) and exit with status 2, because applying the
	// entries after it would let this replica diverge from the others.
	OnFatal func(error)
	// BeforeExpiryRevoke is a fault point of the chaos build (server.Faults;
	// nil otherwise): it is called with each lease an expiry revoke is about
	// to delete. It changes the replicated state, so every replica must be
	// given the same one (the orphan-items variant breaks rule 3).
	BeforeExpiryRevoke func(le lessor.Lessor, id lessor.LeaseID)
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Lessor == nil:
		return errors.New("fsm: Config.Lessor is required")
	}
	return nil
}

// Item is one item of the item store: a key attached to a lease.
type Item struct {
	Key      string
	LeaseID  lessor.LeaseID
	Value    string
	Revision uint64 // the Raft index of the attach that created it; the fencing token
}

// Result is what Apply returns for a command entry.
type Result struct {
	Err     error          // nil, or one of this package's or the lessor's sentinels, wrapped
	LeaseID lessor.LeaseID // Grant
	TTL     int64          // Grant: the TTL in milliseconds, as logged
	Item    Item           // Attach
	Batch   []*Result      // a batch entry (EncodeBatch): one result per command, in order
}

// itemState is an item store entry; the key is the map key.
type itemState struct {
	leaseID  lessor.LeaseID
	value    string
	revision uint64
}

// FSM is the replicated state machine. Apply, ApplyBatch, Snapshot and
// Restore are called by raft's FSM goroutine; Item, AppliedIndex and
// StateHash are safe from any goroutine.
type FSM struct {
	lessor  lessor.Lessor
	logger  hclog.Logger
	onFatal func(error)
	expiry  func(lessor.Lessor, lessor.LeaseID) // Config.BeforeExpiryRevoke

	// stateMu serialises changes to the replicated state (Apply, Restore)
	// against readers that need all of it at once (StateHash, Snapshot).
	// Lock order: stateMu, then the lessor's own lock, then itemsMu.
	stateMu  sync.RWMutex
	dedupe   *window // guarded by stateMu
	lastTerm uint64  // term of the last entry applied; guarded by stateMu
	// restore is the restore record of the snapshot this state descends
	// from (snapshot.Restored), nil if none; guarded by stateMu. Replicated:
	// carried into later snapshots and hashed.
	restore *snapshot.RestoreInfo

	// itemsMu guards items. Revoke deletes from items through the lessor's
	// range-deleter hook, which runs under the lessor's lock.
	itemsMu sync.RWMutex
	items   map[string]itemState

	applied atomic.Uint64 // index of the last entry applied
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an FSM over cfg.Lessor, which should hold no leases yet: the
// state comes from the log and snapshots.
func New(cfg Config) (*FSM, error) {
	return newFSM(cfg, DedupeWindow)
}

// newFSM is New with a dedupe window of the given size: tests use small
// ones to reach eviction quickly.
func newFSM(cfg Config, window int) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	f := &FSM{
		lessor: cfg.Lessor,
		logger: cfg.Logger,
		dedupe: newWindow(window),
		items:  make(map[string]itemState),
	}
	f.onFatal = cfg.OnFatal
	f.expiry = cfg.BeforeExpiryRevoke
	if f.onFatal == nil {
		f.onFatal = func(err error) {
			f.logger.Error("cannot apply log entry; stopping so as not to diverge from the other replicas", "error", err)
			fmt.Fprintf(os.Stderr, "fatal: %v\n", err)
			os.Exit(2)
		}
	}
	f.lessor.SetRangeDeleter(f.rangeDeleter)
	return f, nil
}

// Apply applies one log entry. It returns a *Result for a command entry and
// nil for any other entry type.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.stateMu.Lock()
	defer f.stateMu.Unlock()
	return f.applyLocked(l)
}

// ApplyBatch applies consecutive log entries (raft.BatchingFSM): a *Result
// for each command entry, nil for configuration and other entries.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.stateMu.Lock()
	defer f.stateMu.Unlock()
	for i, l := range logs {
		out[i] = f.applyLocked(l)
	}
	return out
}

func (f *FSM) applyLocked(l *raft.Log) interface{} {
	defer func() {
		f.lastTerm = l.Term
		f.applied.Store(l.Index)
	}()
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.applyCommand(l.Index, l.Data)
}

// applyCommand decodes and applies one command entry. A returned error
// means nothing changed, with one exception: a command that failed is not
// remembered for deduplication, so that failures leave no trace at all.
func (f *FSM) applyCommand(index uint64, data []byte) *Result {
	cmd, err := decode(data)
	if err != nil {
		return f.undecodable(index, err)
	}
	b, ok := cmd.Body.(*leasepb.Command_Batch)
	if !ok {
		return f.applyDecoded(index, cmd)
	}
	if err := validate(cmd); err != nil {
		return &Result{Err: err}
	}
	res := &Result{Batch: make([]*Result, len(b.Batch.Commands))}
	for i, data := range b.Batch.Commands {
		sub, err := decode(data)
		switch {
		case err != nil:
			res.Batch[i] = f.undecodable(index, fmt.Errorf("command %d of the batch: %w", i, err))
		case !batchable(sub):
			res.Batch[i] = &Result{Err: fmt.Errorf("%w: command %d of the batch at index %d", ErrNotBatchable, i, index)}
		default:
			res.Batch[i] = f.applyDecoded(index, sub)
		}
	}
	return res
}

// undecodable handles a command this build cannot apply: one of an unknown
// version is refused (an operator upgrades), anything else stops the node.
func (f *FSM) undecodable(index uint64, err error) *Result {
	err = fmt.Errorf("fsm: log entry at index %d: %w", index, err)
	if errors.Is(err, ErrUnsupportedVersion) {
		f.logger.Error("refusing command of an unknown version", "index", index, "error", err)
	} else {
		f.onFatal(err)
	}
	return &Result{Err: err}
}

// applyDecoded applies one decoded command that is not a batch.
func (f *FSM) applyDecoded(index uint64, cmd *leasepb.Command) *Result {
	kind := kindOf(cmd)
	if id := cmd.RequestId; id != 0 {
		if d, ok := f.dedupe.get(id); ok {
			if d.Kind != kind {
				return &Result{Err: fmt.Errorf("%w: request %d was a %v, now a %v", ErrRequestIDReused, id, d.Kind, kind)}
			}
			return replay(d, cmd)
		}
	}
	if err := validate(cmd); err != nil {
		return &Result{Err: err}
	}
	res := f.execute(index, cmd)
	if res.Err == nil && cmd.RequestId != 0 {
		d := snapshot.Dedupe{RequestID: cmd.RequestId, Kind: kind, LeaseID: res.LeaseID, TTL: res.TTL}
		if kind == leasepb.CommandKind_COMMAND_KIND_ATTACH {
			d.LeaseID, d.Key, d.Revision = res.Item.LeaseID, res.Item.Key, res.Item.Revision
		}
		f.dedupe.add(d)
	}
	return res
}

// replay rebuilds the result of a remembered request. An attach's value is
// not remembered (the window would hold up to 64 KiB per entry); the retry
// carries the same value as the original, so it is echoed from there.
func replay(d snapshot.Dedupe, cmd *leasepb.Command) *Result {
	switch d.Kind {
	case leasepb.CommandKind_COMMAND_KIND_GRANT:
		return &Result{LeaseID: d.LeaseID, TTL: d.TTL}
	case leasepb.CommandKind_COMMAND_KIND_ATTACH:
		return &Result{Item: Item{Key: d.Key, LeaseID: d.LeaseID, Value: cmd.GetAttach().GetValue(), Revision: d.Revision}}
	}
	return &Result{}
}

// execute applies a validated command.
func (f *FSM) execute(index uint64, cmd *leasepb.Command) *Result {
	switch b := cmd.Body.(type) {
	case *leasepb.Command_Grant:
		l, err := f.lessor.GrantOwned(lessor.LeaseID(b.Grant.Id), b.Grant.TtlMs, b.Grant.Owner)
		if err != nil {
			return &Result{Err: err}
		}
		return &Result{LeaseID: l.ID, TTL: l.TTL()}
	case *leasepb.Command_Revoke:
		return &Result{Err: f.revoke(b.Revoke.Ids, b.Revoke.Expired, b.Revoke.Actor)}
	case *leasepb.Command_Attach:
		return f.attach(index, b.Attach)
	case *leasepb.Command_Detach:
		return &Result{Err: f.detach(b.Detach)}
	case *leasepb.Command_Checkpoint:
		cps := make([]lessor.Checkpoint, len(b.Checkpoint.Checkpoints))
		for i, cp := range b.Checkpoint.Checkpoints {
			cps[i] = lessor.Checkpoint{ID: lessor.LeaseID(cp.Id), Remaining: cp.RemainingMs, Gen: cp.Gen}
		}
		f.lessor.Checkpoint(cps)
		return &Result{}
	}
	// validate refuses any other body, and applyCommand takes batches apart
	// (a batch inside one is not batchable).
	return &Result{Err: fmt.Errorf("%w: command without a body", ErrUndecodable)}
}

// mayAct is the ownership rule (ARCHITECTURE.md rule 10): a client command
// on a lease is allowed if the lease has no owner, or the logged actor is an
// admin or the owner. It reads only the logged actor and the replicated
// owner, so every replica decides alike.
func mayAct(owner string, a *leasepb.Actor) bool {
	return owner == "" || a.GetAdmin() || a.GetIdentity() == owner
}

// checkLease returns the lease a client command names, or why the command
// is refused: lessor.ErrLeaseNotFound first (there is no owner to compare
// with), then lessor.ErrPermissionDenied.
func (f *FSM) checkLease(id lessor.LeaseID, a *leasepb.Actor) error {
	l := f.lessor.Lookup(id)
	if l == nil {
		return fmt.Errorf("%w: %d", lessor.ErrLeaseNotFound, id)
	}
	if !mayAct(l.Owner(), a) {
		return fmt.Errorf("%w: lease %d belongs to another identity", lessor.ErrPermissionDenied, id)
	}
	return nil
}

func (f *FSM) revoke(ids []int64, expired bool, a *leasepb.Actor) error {
	if !expired {
		// All or nothing: check every lease, in the command's order, before
		// revoking any; the first that fails decides the error. Only the
		// FSM goroutine changes the lease table, so the checks stay true.
		// An expiry revoke is the leader's and never checks ownership.
		for _, id := range ids {
			if err := f.checkLease(lessor.LeaseID(id), a); err != nil {
				return err
			}
		}
	}
	for _, id := range ids {
		if expired && f.expiry != nil {
			f.expiry(f.lessor, lessor.LeaseID(id)) // a chaos fault point
		}
		err := f.lessor.Revoke(lessor.LeaseID(id))
		if err != nil && !(expired && errors.Is(err, lessor.ErrLeaseNotFound)) {
			// Unreachable unless something outside the FSM revoked the
			// lease between the check and here; the lease is gone either way.
			f.logger.Error("revoke failed after validation", "lease_id", id, "error", err)
		}
	}
	return nil
}

// attach checks, in this order: the lease exists (ErrLeaseNotFound), the
// actor may act on it (ErrPermissionDenied), no other lease holds the key
// (ErrItemHeld, from the lessor). A caller refused the lease learns nothing
// of its items through it.
func (f *FSM) attach(index uint64, a *leasepb.AttachCmd) *Result {
	id := lessor.LeaseID(a.LeaseId)
	if err := f.checkLease(id, a.Actor); err != nil {
		return &Result{Err: err}
	}
	if err := f.lessor.Attach(id, []lessor.LeaseItem{{Key: a.Key}}); err != nil {
		return &Result{Err: err}
	}
	f.itemsMu.Lock()
	defer f.itemsMu.Unlock()
	it, held := f.items[a.Key]
	if !held || it.leaseID != id {
		// A new holder: the revision is this entry's index, which exceeds
		// every earlier revision of the key (rule 7, fencing).
		it = itemState{leaseID: id, revision: index}
	}
	it.value = a.Value
	f.items[a.Key] = it
	return &Result{Item: Item{Key: a.Key, LeaseID: id, Value: it.value, Revision: it.revision}}
}

// detach checks like attach: the lease named in the command exists, the
// actor may act on it, then the lessor's ErrItemNotFound or ErrItemHeld.
// Ownership is that of the named lease: a detach never reaches another
// lease's item (the lessor refuses it with ErrItemHeld).
func (f *FSM) detach(d *leasepb.DetachCmd) error {
	if err := f.checkLease(lessor.LeaseID(d.LeaseId), d.Actor); err != nil {
		return err
	}
	if err := f.lessor.Detach(lessor.LeaseID(d.LeaseId), []lessor.LeaseItem{{Key: d.Key}}); err != nil {
		return err
	}
	f.itemsMu.Lock()
	delete(f.items, d.Key)
	f.itemsMu.Unlock()
	return nil
}

// Item returns the item attached under key.
func (f *FSM) Item(key string) (Item, bool) {
	f.itemsMu.RLock()
	it, ok := f.items[key]
	f.itemsMu.RUnlock()
	if !ok {
		return Item{}, false
	}
	return Item{Key: key, LeaseID: it.leaseID, Value: it.value, Revision: it.revision}, true
}

// ItemCount is the number of items held, by any lease.
func (f *FSM) ItemCount() int {
	f.itemsMu.RLock()
	defer f.itemsMu.RUnlock()
	return len(f.items)
}

// AppliedIndex returns the index of the last log entry applied (or restored
// from a snapshot).
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// rangeDeleter is the lessor's hook into the item store (lessor.RangeDeleter).
func (f *FSM) rangeDeleter() lessor.TxnDelete { return itemTxn{f} }

// itemTxn deletes items for a revoke. The lessor only deletes single keys
// (end == nil).
type itemTxn struct{ f *FSM }

func (t itemTxn) DeleteRange(key, _ []byte) (n, rev int64) {
	t.f.itemsMu.Lock()
	defer t.f.itemsMu.Unlock()
	if _, ok := t.f.items[string(key)]; !ok {
		return 0, 0
	}
	delete(t.f.items, string(key))
	return 1, 0
}

func (itemTxn) End() {}
