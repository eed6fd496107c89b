package lessor

import "time"

// FakeLessor is a Lessor that does nothing, for tests of other packages that
// need a Lessor but not its behaviour. Grant and GrantOwned return a lease
// with the requested ID, TTL and owner; everything else succeeds and finds
// nothing.
type FakeLessor struct{}

var _ Lessor = (*FakeLessor)(nil)

func (*FakeLessor) SetRangeDeleter(RangeDeleter) {}
func (*FakeLessor) Grant(id LeaseID, ttl int64) (*Lease, error) {
	return &Lease{ID: id, ttl: ttl}, nil
}
func (*FakeLessor) GrantOwned(id LeaseID, ttl int64, owner string) (*Lease, error) {
	return &Lease{ID: id, ttl: ttl, owner: owner}, nil
}
func (*FakeLessor) Revoke(LeaseID) error                     { return nil }
func (*FakeLessor) Attach(LeaseID, []LeaseItem) error        { return nil }
func (*FakeLessor) GetLease(LeaseItem) LeaseID               { return NoLease }
func (*FakeLessor) Detach(LeaseID, []LeaseItem) error        { return nil }
func (*FakeLessor) Promote(time.Duration)                    {}
func (*FakeLessor) Demote()                                  {}
func (*FakeLessor) IsPrimary() bool                          { return false }
func (*FakeLessor) Renew(LeaseID) (int64, error)             { return 0, nil }
func (*FakeLessor) RenewAll([]Renewal)                       {}
func (*FakeLessor) Lookup(LeaseID) *Lease                    { return nil }
func (*FakeLessor) Leases() []*Lease                         { return nil }
func (*FakeLessor) Len() int                                 { return 0 }
func (*FakeLessor) Expired(LeaseID) bool                     { return false }
func (*FakeLessor) ExpiredLeasesC() <-chan []*Lease          { return nil }
func (*FakeLessor) CheckpointsC() <-chan []Checkpoint        { return nil }
func (*FakeLessor) Checkpoint([]Checkpoint)                  {}
func (*FakeLessor) State() []LeaseState                      { return nil }
func (*FakeLessor) CopyState() []LeaseState                  { return nil }
func (*FakeLessor) Recover([]LeaseState, RangeDeleter) error { return nil }
func (*FakeLessor) Stop()                                    {}
