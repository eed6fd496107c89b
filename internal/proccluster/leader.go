package proccluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Status is a member's GET /v1/status.
type Status struct {
	Name         string `json:"name"`
	Role         string `json:"role"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func (m *Member) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.scheme+"://"+m.HTTPAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: GET %s: %s: %s", m.Name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, err
}

// Status asks m for its status over HTTP.
func (m *Member) Status(ctx context.Context) (Status, error) {
	var s Status
	body, err := m.get(ctx, "/v1/status")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(body, &s)
}

// Ready is nil when m's /readyz answers 200: it knows a leader (and, if it
// leads, has established its leadership) and has applied what is committed.
func (m *Member) Ready(ctx context.Context) error {
	_, err := m.get(ctx, "/readyz")
	return err
}

// pollEvery is how often WaitLeader asks the members.
const pollEvery = 50 * time.Millisecond

// WaitLeader waits until every running member names the same running
// leader, that leader calls itself leader, and every running member is
// ready; it returns the leader. Members that are not running (killed) are
// left out; a paused one holds the wait up. When ctx ends the error wraps
// its cause.
func (c *Cluster) WaitLeader(ctx context.Context) (*Member, error) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		leader, err := c.leader(ctx)
		if err == nil {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("proccluster: no leader: %w (last: %v)", context.Cause(ctx), err)
		case <-tick.C:
		}
	}
}

// leader is one round of WaitLeader's checks.
func (c *Cluster) leader(ctx context.Context) (*Member, error) {
	name := ""
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		s, err := m.Status(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case s.Leader == "":
			return nil, fmt.Errorf("%s knows no leader", m.Name)
		case name != "" && s.Leader != name:
			return nil, fmt.Errorf("%s follows %s, another member follows %s", m.Name, s.Leader, name)
		case s.Leader == m.Name && s.Role != "leader":
			return nil, fmt.Errorf("%s is named leader but its role is %q", m.Name, s.Role)
		}
		name = s.Leader
		if err := m.Ready(ctx); err != nil {
			return nil, err
		}
	}
	leader := c.Member(name)
	switch {
	case leader == nil:
		return nil, fmt.Errorf("unknown leader %q", name)
	case !leader.Running():
		// Followers keep naming a killed leader until their heartbeat
		// timeout; that is not a leader to wait for.
		return nil, fmt.Errorf("leader %s is not running", name)
	}
	return leader, nil
}
