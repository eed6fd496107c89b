package leasehttp

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// Membership routes (issue 21), through the client library like every /v1
// route but /v1/status: a follower forwards them to the leader. With TLS
// only admins' certificates (--admin-cn) may change the membership (403
// otherwise).
//
//	GET    /v1/members                         the members, each with its applied index
//	POST   /v1/members {"name","address","non_voter"}  add (a non-voter, promoted once caught up)
//	DELETE /v1/members/{name}[?force=true]     remove
//	POST   /v1/leader/transfer {"name"}        hand leadership over (body optional; no name: any voter)
func (h *handler) memberRoutes() {
	h.route("/v1/members", map[string]http.HandlerFunc{"GET": h.members, "POST": h.addMember})
	h.route("/v1/members/{name}", map[string]http.HandlerFunc{"DELETE": h.removeMember})
	h.route("/v1/leader/transfer", map[string]http.HandlerFunc{"POST": h.transferLeader})
}

type (
	memberJSON struct {
		Name         string `json:"name"`
		Address      string `json:"address"`
		Voter        bool   `json:"voter"`
		Leader       bool   `json:"leader"`
		AppliedIndex uint64 `json:"applied_index"`
		StatusError  string `json:"status_error,omitempty"` // why applied_index is unknown
		Promoting    bool   `json:"promoting,omitempty"`    // a non-voter to be promoted once caught up
	}
	membersResponse struct {
		Members []memberJSON `json:"members"`
	}
	addMemberRequest struct {
		Name     string `json:"name"`
		Address  string `json:"address"`
		NonVoter bool   `json:"non_voter"`
	}
	addMemberResponse struct {
		Member memberJSON `json:"member"`
	}
	transferRequest struct {
		Name string `json:"name"`
	}
	transferResponse struct {
		Leader        string `json:"leader"`
		LeaderAddress string `json:"leader_address"`
	}
)

func toMember(m *leasepb.Member) memberJSON {
	return memberJSON{Name: m.GetName(), Address: m.GetAddress(), Voter: m.GetVoter(), Leader: m.GetLeader(),
		AppliedIndex: m.GetAppliedIndex(), StatusError: m.GetStatusError(), Promoting: m.GetPromoting()}
}

// failMember maps the membership errors, then the others as fail does.
func (h *handler) failMember(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, client.ErrMemberNotFound):
		writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error(), 0)
	case errors.Is(err, client.ErrMembershipRefused):
		writeError(w, http.StatusConflict, "FAILED_PRECONDITION", err.Error(), 0)
	default:
		h.fail(w, err)
	}
}

func (h *handler) members(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	ms, err := h.cfg.Client.Members(ctx)
	if err != nil {
		h.failMember(w, err)
		return
	}
	out := membersResponse{Members: make([]memberJSON, 0, len(ms))}
	for _, m := range ms {
		out.Members = append(out.Members, toMember(m))
	}
	writeJSON(w, out)
}

func (h *handler) addMember(w http.ResponseWriter, r *http.Request) {
	var req addMemberRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, err)
		return
	}
	if req.Name == "" || req.Address == "" {
		h.fail(w, fmt.Errorf("%w: name and address are required", ErrBadRequest))
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	m, err := h.cfg.Client.AddMember(ctx, req.Name, req.Address, client.MemberOptions{NonVoter: req.NonVoter})
	if err != nil {
		h.failMember(w, err)
		return
	}
	writeJSON(w, addMemberResponse{Member: toMember(m)})
}

func (h *handler) removeMember(w http.ResponseWriter, r *http.Request) {
	force := false
	if q := r.URL.Query(); q.Has("force") {
		var err error
		if force, err = strconv.ParseBool(q.Get("force")); err != nil {
			h.fail(w, fmt.Errorf("%w: force must be true or false", ErrBadRequest))
			return
		}
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if err := h.cfg.Client.RemoveMember(ctx, r.PathValue("name"), force); err != nil {
		h.failMember(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (h *handler) transferLeader(w http.ResponseWriter, r *http.Request) {
	var req transferRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			h.fail(w, err)
			return
		}
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	leader, addr, err := h.cfg.Client.TransferLeader(ctx, req.Name)
	if err != nil {
		h.failMember(w, err)
		return
	}
	writeJSON(w, transferResponse{Leader: leader, LeaderAddress: addr})
}
