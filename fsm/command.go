package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
)

// CommandVersion is the command format version this build writes for single
// commands; BatchVersion is the version of a batch entry (EncodeBatch), the
// first version with the batch body. This build applies both.
const (
	CommandVersion = 1
	BatchVersion   = 2
)

// Errors. Apply returns them (wrapped with details) in Result.Err, and the
// encoders return them before anything is proposed. Lessor sentinels
// (lessor.ErrLeaseNotFound, lessor.ErrItemHeld, lessor.ErrInvalidID, ...) are
// returned as they are, so errors.Is works for both. The item limits are
// those of package limits, and so are their errors: ErrKeyInvalid is
// limits.ErrKeyInvalid, and so on.
var (
	ErrKeyInvalid         = limits.ErrKeyInvalid
	ErrValueTooLarge      = limits.ErrValueTooLarge
	ErrValueInvalid       = limits.ErrValueInvalid
	ErrUnsupportedVersion = errors.New("fsm: unsupported command version")
	ErrUndecodable        = errors.New("fsm: log entry cannot be decoded")
	ErrNoLeases           = errors.New("fsm: command names no leases")
	ErrDuplicateLease     = errors.New("fsm: command names a lease twice")
	ErrRequestIDReused    = errors.New("fsm: request ID already used for a different command")
	ErrNotBatchable       = errors.New("fsm: only grants and client revokes may share a log entry")
)

// Actor is who sent a client revoke, attach or detach, as the leader
// decided before proposing: Identity is the caller's certificate CN ("" for
// a caller without one) and Admin whether the leader's --admin-cn lists it.
// Apply reads only these logged values, never a node's flags (rule 8): a
// command is allowed on a lease without an owner, or when Admin is set, or
// when Identity equals the lease's owner (ARCHITECTURE.md rule 10). The zero
// Actor is encoded as no actor at all, so commands of a cluster without
// identities are byte for byte those of builds before ownership.
type Actor struct {
	Identity string
	Admin    bool
}

func (a Actor) pb() *leasepb.Actor {
	if a == (Actor{}) {
		return nil
	}
	return &leasepb.Actor{Identity: a.Identity, Admin: a.Admin}
}

// EncodeGrant encodes a Grant of lease id with ttlMs milliseconds, owned by
// owner ("" for none), which every replica applies as it is: the proposer
// must already have raised a TTL below its minimum and refused one above its
// maximum (node settings). A TTL outside 1..lessor.TTLCeiling, the format's
// bound, is refused here and on apply, and so is an owner that
// limits.CheckIdentity refuses.
func EncodeGrant(reqID uint64, id lessor.LeaseID, ttlMs int64, owner string) ([]byte, error) {
	return encode(reqID, &leasepb.Command{Body: &leasepb.Command_Grant{Grant: &leasepb.GrantCmd{Id: int64(id), TtlMs: ttlMs, Owner: owner}}})
}

// EncodeRevoke encodes a Revoke of ids. expired is true only for the
// leader's expiry loop: leases already gone are then skipped and actor is
// not consulted (pass Actor{}), where a client revoke fails as a whole with
// lessor.ErrLeaseNotFound or lessor.ErrPermissionDenied.
func EncodeRevoke(reqID uint64, ids []lessor.LeaseID, expired bool, actor Actor) ([]byte, error) {
	raw := make([]int64, len(ids))
	for i, id := range ids {
		raw[i] = int64(id)
	}
	return encode(reqID, &leasepb.Command{Body: &leasepb.Command_Revoke{Revoke: &leasepb.RevokeCmd{Ids: raw, Expired: expired, Actor: actor.pb()}}})
}

// EncodeAttach encodes an Attach of key with value to leaseID by actor.
func EncodeAttach(reqID uint64, leaseID lessor.LeaseID, key, value string, actor Actor) ([]byte, error) {
	return encode(reqID, &leasepb.Command{Body: &leasepb.Command_Attach{Attach: &leasepb.AttachCmd{LeaseId: int64(leaseID), Key: key, Value: value, Actor: actor.pb()}}})
}

// EncodeDetach encodes a Detach of key from leaseID by actor.
func EncodeDetach(reqID uint64, leaseID lessor.LeaseID, key string, actor Actor) ([]byte, error) {
	return encode(reqID, &leasepb.Command{Body: &leasepb.Command_Detach{Detach: &leasepb.DetachCmd{LeaseId: int64(leaseID), Key: key, Actor: actor.pb()}}})
}

// EncodeCheckpoint encodes checkpoints from lessor.CheckpointsC (or a reset
// before a renewal). Checkpoints carry no request ID: applying one twice is
// harmless because the lessor ignores a stale generation.
func EncodeCheckpoint(cps []lessor.Checkpoint) ([]byte, error) {
	pcs := make([]*leasepb.LeaseCheckpoint, len(cps))
	for i, cp := range cps {
		pcs[i] = &leasepb.LeaseCheckpoint{Id: int64(cp.ID), RemainingMs: cp.Remaining, Gen: cp.Gen}
	}
	return encode(0, &leasepb.Command{Body: &leasepb.Command_Checkpoint{Checkpoint: &leasepb.CheckpointCmd{Checkpoints: pcs}}})
}

// EncodeBatch joins commands made by EncodeGrant and EncodeRevoke (client
// revokes) into one log entry, which applies them in order, each with its
// own result and deduplication, as if each had an entry of its own (group
// commit). Raft's cost per entry (the log write, replication, the apply) is
// then shared. Anything else must have an entry of its own: an attach takes
// the entry's index as its fencing token.
func EncodeBatch(cmds [][]byte) ([]byte, error) {
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrNoLeases)
	}
	return encodeVersion(BatchVersion, 0, &leasepb.Command{Body: &leasepb.Command_Batch{Batch: &leasepb.BatchCmd{Commands: cmds}}})
}

// batchable reports whether cmd may share a log entry (EncodeBatch).
func batchable(cmd *leasepb.Command) bool {
	switch b := cmd.Body.(type) {
	case *leasepb.Command_Grant:
		return true
	case *leasepb.Command_Revoke:
		return !b.Revoke.GetExpired()
	}
	return false
}

// encode validates cmd, stamps the version and request ID, and marshals it.
func encode(reqID uint64, cmd *leasepb.Command) ([]byte, error) {
	return encodeVersion(CommandVersion, reqID, cmd)
}

func encodeVersion(version uint32, reqID uint64, cmd *leasepb.Command) ([]byte, error) {
	cmd.Version, cmd.RequestId = version, reqID
	if err := validate(cmd); err != nil {
		return nil, err
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode command: %w", err)
	}
	return data, nil
}

// decode parses a log entry. An error wrapping ErrUnsupportedVersion is a
// well-formed command from a version this build does not know: refused, not
// fatal. Any other error means the entry is undecodable (ErrUndecodable):
// the bytes are not a Command, or carry a body or fields this build does not
// recognise, which a v1 writer never produces.
func decode(data []byte) (*leasepb.Command, error) {
	cmd := new(leasepb.Command)
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if cmd.Version != CommandVersion && cmd.Version != BatchVersion {
		return nil, fmt.Errorf("%w: %d (this build applies %d and %d)", ErrUnsupportedVersion, cmd.Version, CommandVersion, BatchVersion)
	}
	if _, batch := cmd.Body.(*leasepb.Command_Batch); batch && cmd.Version < BatchVersion {
		return nil, fmt.Errorf("%w: a version %d command with a batch body", ErrUndecodable, cmd.Version)
	}
	if cmd.Body == nil {
		return nil, fmt.Errorf("%w: version %d command without a known body", ErrUndecodable, cmd.Version)
	}
	if hasUnknown(cmd) {
		return nil, fmt.Errorf("%w: command has fields this build does not know", ErrUndecodable)
	}
	return cmd, nil
}

// hasUnknown reports unknown fields in the command or its body message. The
// LeaseCheckpoints inside a checkpoint body are not searched: a field added
// there would come with a version bump like any other change.
func hasUnknown(cmd *leasepb.Command) bool {
	if len(cmd.ProtoReflect().GetUnknown()) > 0 {
		return true
	}
	var m proto.Message
	switch b := cmd.Body.(type) {
	case *leasepb.Command_Grant:
		m = b.Grant
	case *leasepb.Command_Revoke:
		m = b.Revoke
	case *leasepb.Command_Attach:
		m = b.Attach
	case *leasepb.Command_Detach:
		m = b.Detach
	case *leasepb.Command_Checkpoint:
		m = b.Checkpoint
	case *leasepb.Command_Batch:
		m = b.Batch
	}
	if m == nil {
		return false
	}
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		return true
	}
	// The actor is a message of its own, searched like the body.
	actor := cmd.GetRevoke().GetActor()
	if actor == nil {
		actor = cmd.GetAttach().GetActor()
	}
	if actor == nil {
		actor = cmd.GetDetach().GetActor()
	}
	return actor != nil && len(actor.ProtoReflect().GetUnknown()) > 0
}

// kindOf names a command's body for deduplication.
func kindOf(cmd *leasepb.Command) leasepb.CommandKind {
	switch cmd.Body.(type) {
	case *leasepb.Command_Grant:
		return leasepb.CommandKind_COMMAND_KIND_GRANT
	case *leasepb.Command_Revoke:
		return leasepb.CommandKind_COMMAND_KIND_REVOKE
	case *leasepb.Command_Attach:
		return leasepb.CommandKind_COMMAND_KIND_ATTACH
	case *leasepb.Command_Detach:
		return leasepb.CommandKind_COMMAND_KIND_DETACH
	case *leasepb.Command_Checkpoint:
		return leasepb.CommandKind_COMMAND_KIND_CHECKPOINT
	}
	// A batch is never deduplicated as a whole (validate refuses a request
	// ID on it); its commands are, one by one.
	return leasepb.CommandKind_COMMAND_KIND_UNSPECIFIED
}

// validate applies the checks that depend on the command alone. The encoders
// run it so that the leader refuses bad input before proposing it, and Apply
// runs it again because the log, not the encoder, is the authority.
// Bounds are the format's, never a node's settings. State-dependent checks
// (lease existence, who holds an item) happen on apply.
func validate(cmd *leasepb.Command) error {
	switch b := cmd.Body.(type) {
	case *leasepb.Command_Grant:
		if err := checkID(b.Grant.GetId()); err != nil {
			return err
		}
		// The format's bound (1..lessor.TTLCeiling), never a node's
		// --min-ttl or --max-ttl: replicas started with different flags
		// must apply the same TTL.
		if ttl := b.Grant.GetTtlMs(); ttl < limits.MinTTLMs || ttl > lessor.TTLCeiling.Milliseconds() {
			return fmt.Errorf("%w: %d ms (allowed %d to %d)", lessor.ErrInvalidTTL, ttl, limits.MinTTLMs, lessor.TTLCeiling.Milliseconds())
		}
		return checkOwner("owner", b.Grant.GetOwner())
	case *leasepb.Command_Revoke:
		if err := checkIDs(b.Revoke.GetIds(), true, func(i int) int64 { return b.Revoke.Ids[i] }); err != nil {
			return err
		}
		return checkOwner("actor", b.Revoke.GetActor().GetIdentity())
	case *leasepb.Command_Attach:
		if err := checkID(b.Attach.GetLeaseId()); err != nil {
			return err
		}
		if err := limits.CheckKey(b.Attach.GetKey()); err != nil {
			return err
		}
		if err := limits.CheckValue(b.Attach.GetValue()); err != nil {
			return err
		}
		return checkOwner("actor", b.Attach.GetActor().GetIdentity())
	case *leasepb.Command_Detach:
		if err := checkID(b.Detach.GetLeaseId()); err != nil {
			return err
		}
		if err := limits.CheckKey(b.Detach.GetKey()); err != nil {
			return err
		}
		return checkOwner("actor", b.Detach.GetActor().GetIdentity())
	case *leasepb.Command_Checkpoint:
		cps := b.Checkpoint.GetCheckpoints()
		// Repeats are allowed: checkpoints apply in order, and a renewal
		// batch naming a lease twice may ask for its reset twice.
		if err := checkIDs(cps, false, func(i int) int64 { return cps[i].GetId() }); err != nil {
			return err
		}
		for _, cp := range cps {
			if cp.GetRemainingMs() < 0 || cp.GetRemainingMs() > lessor.TTLCeiling.Milliseconds() {
				return fmt.Errorf("%w: lease %d checkpoint remainder %d ms", lessor.ErrInvalidTTL, cp.GetId(), cp.GetRemainingMs())
			}
		}
	case *leasepb.Command_Batch:
		// The commands inside are checked one by one as they apply: one
		// that fails fails alone, as it would in an entry of its own.
		if cmd.RequestId != 0 {
			return fmt.Errorf("%w: a batch carries no request ID of its own", ErrRequestIDReused)
		}
		if len(b.Batch.GetCommands()) == 0 {
			return fmt.Errorf("%w: empty batch", ErrNoLeases)
		}
	default:
		return fmt.Errorf("%w: command without a body", ErrUndecodable)
	}
	return nil
}

// checkOwner checks a lease owner or an actor's identity against
// limits.CheckIdentity; the error wraps limits.ErrIdentityInvalid.
func checkOwner(what, id string) error {
	if err := limits.CheckIdentity(id); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func checkID(id int64) error {
	if limits.CheckLeaseID(id) != nil {
		return fmt.Errorf("%w: %d", lessor.ErrInvalidID, id)
	}
	return nil
}

// checkIDs checks a non-empty list of positive lease IDs, distinct if asked.
// A revoke must not name a lease twice: the second revoke of an all-or-nothing
// batch would fail after the first had succeeded.
func checkIDs[T any](list []T, distinct bool, id func(int) int64) error {
	if len(list) == 0 {
		return ErrNoLeases
	}
	seen := make(map[int64]struct{}, len(list))
	for i := range list {
		v := id(i)
		if err := checkID(v); err != nil {
			return err
		}
		if _, dup := seen[v]; dup && distinct {
			return fmt.Errorf("%w: %d", ErrDuplicateLease, v)
		}
		seen[v] = struct{}{}
	}
	return nil
}
