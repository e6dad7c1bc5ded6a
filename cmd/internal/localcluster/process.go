// Package localcluster runs a whole flashd system on one machine, as
// supervised child processes on loopback: a 3-node store cluster in three
// regions and front doors (`flashd store`, `flashd frontdoor`), or any other
// server a tool needs beside them. Every child dies with its parent
// (Pdeathsig) and is stopped by its own PID. `flashd demo` and `flashctl
// bench` share it; it also reads the children's Prometheus metrics.
package localcluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits of a child's life cycle.
const (
	stopGrace    = 3 * time.Second // SIGTERM, then SIGKILL
	logTailBytes = 2000
)

// Process is one supervised child process: `flashd store`, `flashd
// frontdoor`, or another server. It dies with its parent (Pdeathsig), and
// is stopped by its own PID.
type Process struct {
	Name, Region       string
	GRPCAddr, HTTPAddr string   // where it serves (empty when it does not)
	Args               []string // its command line, the binary excluded
	Log                string   // file its standard output and error go to

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Start runs bin with p.Args, its output appended to p.Log.
func (p *Process) Start(bin string) error {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child dies with its parent, even a parent killed with -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

func (p *Process) running() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// PID returns the process ID, 0 if never started.
func (p *Process) PID() int {
	if cmd, _ := p.running(); cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

// Alive reports whether the process is running.
func (p *Process) Alive() bool {
	_, done := p.running()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (kill -9) and waits for the process to exit.
func (p *Process) Kill() {
	cmd, done := p.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop asks the process to shut down (SIGTERM), then kills it after
// stopGrace.
func (p *Process) Stop() {
	cmd, done := p.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopGrace):
		p.Kill()
	}
}

// LogTail returns the end of the process's log.
func (p *Process) LogTail() string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// Exited returns an error naming the first process of list that was
// started and has exited, with the end of its log; nil if none has.
func Exited(list ...*Process) error {
	for _, p := range list {
		if p.PID() != 0 && !p.Alive() {
			return fmt.Errorf("%s exited; the end of %s:\n%s", p.Name, p.Log, p.LogTail())
		}
	}
	return nil
}

// Ports are picked below the kernel's ephemeral range, where outgoing
// connections (the parent's own, between its children, and other
// programs') never take them between the pick and the child's bind.
const (
	portFloor          = 10000
	ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"
	portPicksMax       = 1000
)

// FreeAddrs returns n loopback addresses nothing listens on now, on
// distinct ports below the ephemeral range (any free port if that range
// leaves no room).
func FreeAddrs(n int) ([]string, error) {
	ceiling := 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile(ephemeralRangeFile); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil {
				ceiling = lo
			}
		}
	}
	var out []string
	for try := 0; len(out) < n && try < portPicksMax; try++ {
		port := 0 // the kernel's choice
		if ceiling-portFloor > 100 {
			port = portFloor + rand.IntN(ceiling-portFloor)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("found only %d free loopback ports of %d", len(out), n)
	}
	return out, nil
}

// CPUSeconds returns the CPU time (user and system) the running process
// has used so far, from /proc; 0 if it cannot be read.
func (p *Process) CPUSeconds() float64 {
	pid := p.PID()
	if pid == 0 || !p.Alive() {
		return 0
	}
	return ProcCPUSeconds(pid)
}

// clockTicksPerSecond is USER_HZ, the unit of /proc/PID/stat's times: 100
// on every Linux architecture Go supports.
const clockTicksPerSecond = 100

// ProcCPUSeconds returns the CPU time (user and system) process pid has
// used, from /proc/PID/stat; 0 if it cannot be read.
func ProcCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing one. utime and stime are
	// fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (utime + stime) / clockTicksPerSecond
}
