package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// Op statuses: ok and fail are definite, info means the outcome is unknown
// (the request may or may not have taken effect).
const (
	StatusOK   = "ok"
	StatusFail = "fail"
	StatusInfo = "info"
)

// Op kinds.
const (
	OpGrant  = "grant"  // Lease, TTLms (effective) on ok
	OpRenew  = "renew"  // Lease, TTLms; Found=false: the lease was gone
	OpRevoke = "revoke" // Lease; Found=false: it was already gone
	OpTTL    = "ttl"    // Lease; Found, TTLms (granted), RemainingMs
	OpAttach = "attach" // Key, Lease; Holder and Rev on ok
	OpDetach = "detach" // Key, Lease
	OpGet    = "get"    // Key; Found, Holder, Rev
	OpWrite  = "write"  // Key, Lease, Rev (the token), Deadline; Accepted
)

// ErrHistory is returned when a history file cannot be read back.
var ErrHistory = errors.New("chaos: bad history")

// Op is one operation of the history. Times are nanoseconds on the run's
// monotonic clock.
type Op struct {
	Index       int    `json:"index"`
	Process     int    `json:"process"`
	Kind        string `json:"kind"`
	Status      string `json:"status"`
	Lease       int64  `json:"lease,omitempty"`
	Key         string `json:"key,omitempty"`
	Found       bool   `json:"found,omitempty"`
	Holder      int64  `json:"holder,omitempty"`
	Rev         uint64 `json:"rev,omitempty"`
	TTLms       int64  `json:"ttl_ms,omitempty"`
	ReqTTLms    int64  `json:"req_ttl_ms,omitempty"` // grant: the TTL asked for
	RemainingMs int64  `json:"remaining_ms,omitempty"`
	Deadline    int64  `json:"deadline_ns,omitempty"` // a holder's validity deadline (write ops)
	Accepted    bool   `json:"accepted,omitempty"`
	Err         string `json:"error,omitempty"`
	Invoke      int64  `json:"invoke_ns"`
	Complete    int64  `json:"complete_ns"`
}

// Fault is one nemesis action, from when it started to when it was healed.
type Fault struct {
	ID      int      `json:"id"`
	Kind    string   `json:"kind"`
	Detail  string   `json:"detail"`
	Targets []string `json:"targets,omitempty"`
	Start   int64    `json:"start_ns"`
	End     int64    `json:"end_ns"`
}

// History records operations and faults concurrently.
type History struct {
	start time.Time

	mu     sync.Mutex // guards ops and faults
	ops    []Op
	faults []Fault
}

// NewHistory starts a history whose clock reads 0 now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the time on the history's monotonic clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// At converts a time.Time from this process (with its monotonic reading)
// onto the history's clock.
func (h *History) At(t time.Time) int64 { return int64(t.Sub(h.start)) }

// Add records a completed operation and returns its index.
func (h *History) Add(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Index = len(h.ops)
	h.ops = append(h.ops, op)
	return op.Index
}

// StartFault records the start of a fault and returns its ID.
func (h *History) StartFault(kind, detail string, targets []string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := len(h.faults)
	h.faults = append(h.faults, Fault{ID: id, Kind: kind, Detail: detail, Targets: targets, Start: h.Now(), End: -1})
	return id
}

// EndFault records that fault id has been healed.
func (h *History) EndFault(id int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id >= 0 && id < len(h.faults) && h.faults[id].End < 0 {
		h.faults[id].End = h.Now()
	}
}

// Ops returns the operations sorted by invoke time.
func (h *History) Ops() []Op {
	h.mu.Lock()
	out := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Invoke < out[j].Invoke })
	return out
}

// Faults returns the faults in start order; unhealed ones end now.
func (h *History) Faults() []Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]Fault(nil), h.faults...)
	for i := range out {
		if out[i].End < 0 {
			out[i].End = h.Now()
		}
	}
	return out
}

// historyLine is one line of history.jsonl: an operation or a fault event.
type historyLine struct {
	Type  string `json:"type"` // "op", "fault"
	Op    *Op    `json:"op,omitempty"`
	Fault *Fault `json:"fault,omitempty"`
}

// WriteJSONL writes the operations and faults, one JSON object per line.
func WriteJSONL(path string, ops []Op, faults []Fault) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range faults {
		if err := enc.Encode(historyLine{Type: "fault", Fault: &faults[i]}); err != nil {
			f.Close()
			return err
		}
	}
	for i := range ops {
		if err := enc.Encode(historyLine{Type: "op", Op: &ops[i]}); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadJSONL reads back a history written by WriteJSONL, so that a run's
// history can be checked again offline.
func ReadJSONL(path string) ([]Op, []Fault, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var ops []Op
	var faults []Fault
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var l historyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, nil, fmt.Errorf("%w: line %d: %v", ErrHistory, line, err)
		}
		switch {
		case l.Op != nil:
			ops = append(ops, *l.Op)
		case l.Fault != nil:
			faults = append(faults, *l.Fault)
		}
	}
	return ops, faults, sc.Err()
}
