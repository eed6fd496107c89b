package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU accounting of the throughput workloads. Throughput on this shared,
// drifting machine moves by a tenth or more between passes; the CPU that a
// system's nodes spend per operation moves much less, and says where the
// time goes: the nodes' own work, or the load generator's, which shares the
// machine with both systems alike.

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU returns the user and system CPU time process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// selfCPU is the benchmark process's own CPU time: the load generator's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuSample is the CPU time of a cluster's live nodes and of this process.
type cpuSample struct {
	nodes, self time.Duration
	ok          bool
}

func sampleCPU(ns []*node) cpuSample {
	s := cpuSample{self: selfCPU(), ok: true}
	for _, n := range ns {
		if !n.alive() {
			continue
		}
		c, err := procCPU(n.pid())
		if err != nil {
			s.ok = false
			continue
		}
		s.nodes += c
	}
	return s
}

// cpuWindow samples at the start and the end of a workload's measured
// interval, [warm, warm+dur) after it was started.
type cpuWindow struct{ done chan [2]cpuSample }

func startCPUWindow(ns []*node, warm, dur time.Duration) *cpuWindow {
	w := &cpuWindow{done: make(chan [2]cpuSample, 1)}
	start := time.Now()
	go func() {
		time.Sleep(time.Until(start.Add(warm)))
		a := sampleCPU(ns)
		time.Sleep(time.Until(start.Add(warm + dur)))
		w.done <- [2]cpuSample{a, sampleCPU(ns)}
	}()
	return w
}

// record waits for the end of the interval and stores the CPU spent in it
// on r. A node that died or restarted meanwhile leaves it unmeasured.
func (w *cpuWindow) record(r *LoadResult) {
	s := <-w.done
	if !s[0].ok || !s[1].ok || s[1].nodes < s[0].nodes {
		return
	}
	r.ServerCPUSeconds = round3((s[1].nodes - s[0].nodes).Seconds())
	r.LoadCPUSeconds = round3((s[1].self - s[0].self).Seconds())
}

// cpuPerOpUs is CPU seconds spent per operation, in microseconds.
func cpuPerOpUs(secs float64, ops int) float64 {
	if ops == 0 || secs == 0 {
		return 0
	}
	return round1(secs * 1e6 / float64(ops))
}
