package clienttest

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/limits"
)

// server is one node's gRPC face onto the shared table.
type server struct {
	leasepb.UnimplementedLeasesServer
	leasepb.UnimplementedItemsServer
	leasepb.UnimplementedClusterServer
	c   *Cluster
	idx int
}

func (s *server) Grant(_ context.Context, req *leasepb.GrantRequest) (*leasepb.GrantResponse, error) {
	c := s.c
	resp, err := c.mutate(s.idx, "Grant", req.GetRequestId(), func() (proto.Message, error) {
		if req.GetTtlMs() <= 0 || req.GetId() < 0 {
			return nil, status.Error(codes.InvalidArgument, "ttl_ms must be positive")
		}
		id := req.GetId()
		if id == 0 {
			for c.leases[c.nextID] != nil {
				c.nextID++
			}
			id = c.nextID
			c.nextID++
		} else if c.leases[id] != nil {
			return nil, status.Errorf(codes.AlreadyExists, "lease %d exists", id)
		}
		ttl := time.Duration(req.GetTtlMs()) * time.Millisecond
		c.leases[id] = &lease{id: id, ttl: ttl, expiry: time.Now().Add(ttl)}
		c.index++
		return &leasepb.GrantResponse{Id: id, TtlMs: req.GetTtlMs()}, nil
	})
	if err != nil {
		return nil, err
	}
	return resp.(*leasepb.GrantResponse), nil
}

func (s *server) Revoke(_ context.Context, req *leasepb.RevokeRequest) (*leasepb.RevokeResponse, error) {
	c := s.c
	_, err := c.mutate(s.idx, "Revoke", req.GetRequestId(), func() (proto.Message, error) {
		if !c.deleteLeaseLocked(req.GetId()) {
			return nil, status.Errorf(codes.NotFound, "lease %d not found", req.GetId())
		}
		c.index++
		return &leasepb.RevokeResponse{}, nil
	})
	if err != nil {
		return nil, err
	}
	return &leasepb.RevokeResponse{}, nil
}

func (s *server) TimeToLive(_ context.Context, req *leasepb.TimeToLiveRequest) (*leasepb.TimeToLiveResponse, error) {
	c := s.c
	resp, err := c.read(s.idx, func() (proto.Message, error) {
		l := c.leases[req.GetId()]
		if l == nil {
			return nil, status.Errorf(codes.NotFound, "lease %d not found", req.GetId())
		}
		r := &leasepb.TimeToLiveResponse{Id: l.id, GrantedTtlMs: l.ttl.Milliseconds(), RemainingMs: time.Until(l.expiry).Milliseconds()}
		if req.GetKeys() {
			r.Keys = c.keysLocked(l.id)
		}
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return resp.(*leasepb.TimeToLiveResponse), nil
}

func (s *server) Leases(_ context.Context, _ *leasepb.LeasesRequest) (*leasepb.LeasesResponse, error) {
	c := s.c
	resp, err := c.read(s.idx, func() (proto.Message, error) {
		r := &leasepb.LeasesResponse{}
		for _, l := range c.leases {
			r.Leases = append(r.Leases, &leasepb.LeaseStatus{Id: l.id, GrantedTtlMs: l.ttl.Milliseconds(), RemainingMs: time.Until(l.expiry).Milliseconds()})
		}
		slices.SortFunc(r.Leases, func(a, b *leasepb.LeaseStatus) int { return compare(a.GetId(), b.GetId()) })
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return resp.(*leasepb.LeasesResponse), nil
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *server) Attach(_ context.Context, req *leasepb.AttachRequest) (*leasepb.AttachResponse, error) {
	c := s.c
	resp, err := c.mutate(s.idx, "Attach", req.GetRequestId(), func() (proto.Message, error) {
		if err := errors.Join(limits.CheckKey(req.GetKey()), limits.CheckValue(req.GetValue())); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if c.leases[req.GetLeaseId()] == nil {
			return nil, status.Errorf(codes.NotFound, "lease %d not found", req.GetLeaseId())
		}
		it := c.items[req.GetKey()]
		switch {
		case it == nil:
			c.index++
			it = &leasepb.Item{Key: req.GetKey(), LeaseId: req.GetLeaseId(), Revision: c.index}
			c.items[req.GetKey()] = it
		case it.GetLeaseId() != req.GetLeaseId():
			return nil, status.Errorf(codes.FailedPrecondition, "item %q held by lease %d", req.GetKey(), it.GetLeaseId())
		}
		it.Value = req.GetValue()
		return &leasepb.AttachResponse{Item: proto.Clone(it).(*leasepb.Item)}, nil
	})
	if err != nil {
		return nil, err
	}
	return resp.(*leasepb.AttachResponse), nil
}

func (s *server) Detach(_ context.Context, req *leasepb.DetachRequest) (*leasepb.DetachResponse, error) {
	c := s.c
	_, err := c.mutate(s.idx, "Detach", req.GetRequestId(), func() (proto.Message, error) {
		it := c.items[req.GetKey()]
		switch {
		case it == nil:
			return nil, status.Errorf(codes.NotFound, "item %q not found", req.GetKey())
		case it.GetLeaseId() != req.GetLeaseId():
			return nil, status.Errorf(codes.FailedPrecondition, "item %q held by lease %d", req.GetKey(), it.GetLeaseId())
		}
		delete(c.items, req.GetKey())
		c.index++
		return &leasepb.DetachResponse{}, nil
	})
	if err != nil {
		return nil, err
	}
	return &leasepb.DetachResponse{}, nil
}

func (s *server) Get(_ context.Context, req *leasepb.GetRequest) (*leasepb.GetResponse, error) {
	c := s.c
	resp, err := c.read(s.idx, func() (proto.Message, error) {
		it := c.items[req.GetKey()]
		if it == nil {
			return nil, status.Errorf(codes.NotFound, "item %q not found", req.GetKey())
		}
		return &leasepb.GetResponse{Item: proto.Clone(it).(*leasepb.Item)}, nil
	})
	if err != nil {
		return nil, err
	}
	return resp.(*leasepb.GetResponse), nil
}

func (s *server) Status(context.Context, *leasepb.StatusRequest) (*leasepb.StatusResponse, error) {
	return s.c.Status(s.idx)
}

func (s *server) Members(context.Context, *leasepb.MembersRequest) (*leasepb.MembersResponse, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &leasepb.MembersResponse{}
	for i, n := range c.nodes {
		r.Members = append(r.Members, &leasepb.Member{Name: n.name, Address: n.addr, Voter: true, Leader: i == c.leader})
	}
	return r, nil
}

// kaStream is one open KeepAlive stream; kill ends it with the given error.
type kaStream struct {
	node int
	kill chan error
}

func (s *server) KeepAlive(stream leasepb.Leases_KeepAliveServer) error {
	c := s.c
	ks := &kaStream{node: s.idx, kill: make(chan error, 1)}
	c.mu.Lock()
	if c.leader != s.idx {
		err := c.notLeaderLocked()
		c.mu.Unlock()
		return err
	}
	c.streams[ks] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, ks)
		c.mu.Unlock()
	}()

	ctx := stream.Context()
	reqs := make(chan *leasepb.KeepAliveRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case err := <-ks.kill:
			return err
		case <-recvErr:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case req := <-reqs:
			c.mu.Lock()
			c.arrived[req.GetId()]++
			c.mu.Unlock()
			if stall := c.stalled(); stall != nil {
				select {
				case <-stall:
				case err := <-ks.kill:
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			resp := s.renew(req.GetId())
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// renew resets a lease's expiry.
func (s *server) renew(id int64) *leasepb.KeepAliveResponse {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	l := c.leases[id]
	if l == nil {
		return &leasepb.KeepAliveResponse{Id: id, Error: "NOT_FOUND"}
	}
	l.expiry = time.Now().Add(l.ttl)
	c.renews[id]++
	return &leasepb.KeepAliveResponse{Id: id, TtlMs: l.ttl.Milliseconds()}
}
