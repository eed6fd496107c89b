package fsm

import (
	"errors"
	"fmt"

	"github.com/leasecluster/leasecluster/leasepb"
)

// CheckDecodable reports whether Apply can decode data, the bytes of a
// LogCommand entry: it returns an error wrapping ErrUndecodable exactly when
// applying the entry would call Config.OnFatal, and nil otherwise. A command
// that decodes but fails validation or is of an unknown version is not an
// error here: every replica refuses it the same way on apply.
//
// The Raft transport calls it on every command entry a peer sends, so that
// a peer's undecodable entry is refused before it reaches the log instead of
// stopping every replica that applies it. It only decodes (what Apply does
// first), so it is cheap enough for the replication path.
func CheckDecodable(data []byte) error {
	cmd, err := decode(data)
	if err != nil {
		if errors.Is(err, ErrUnsupportedVersion) {
			return nil
		}
		return err
	}
	b, ok := cmd.Body.(*leasepb.Command_Batch)
	if !ok || validate(cmd) != nil {
		// Apply refuses an invalid batch as a whole, before decoding
		// the commands inside.
		return nil
	}
	for i, sub := range b.Batch.GetCommands() {
		if _, err := decode(sub); err != nil && !errors.Is(err, ErrUnsupportedVersion) {
			return fmt.Errorf("command %d of the batch: %w", i, err)
		}
	}
	return nil
}
