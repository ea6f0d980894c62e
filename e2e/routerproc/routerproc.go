// Package routerproc builds the real sandbox-router binary and runs it as
// its own process for end-to-end tests, benchmarks and the demo. It owns
// that process and nothing else: it is stopped by its PID, and its log is
// kept for the test to print when it failed.
package routerproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/sandbox-router into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("routerproc: cannot locate the source tree")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "sandbox-router")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/sandbox-router")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("routerproc: build: %v\n%s", err, out)
	}
	return bin, nil
}

// Proc is a running router.
type Proc struct {
	// HTTPAddr and AdminAddr are the bound listener addresses.
	HTTPAddr, AdminAddr string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  bytes.Buffer
	err  error
}

// startTimeout bounds the wait for the router's start-up line.
const startTimeout = 30 * time.Second

// Start runs bin with args (plus listeners on free loopback ports unless
// args name them) and returns once it listens.
func Start(ctx context.Context, bin string, args ...string) (*Proc, error) {
	args = append([]string{"--listen-http", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0", "--drain-delay", "0s"}, args...)
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("routerproc: %w", err)
	}
	started := make(chan struct{})
	go p.readLog(stderr, started)
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-started:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("routerproc: exited before listening: %v\n%s", p.exitErr(), p.Log())
	case <-timer.C:
	case <-ctx.Done():
	}
	p.Stop()
	return nil, fmt.Errorf("routerproc: no start-up line\n%s", p.Log())
}

// readLog keeps the router's log and spots its start-up line, which names
// the bound addresses.
func (p *Proc) readLog(r io.Reader, started chan<- struct{}) {
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		line := lines.Bytes()
		p.mu.Lock()
		p.log.Write(line)
		p.log.WriteByte('\n')
		p.mu.Unlock()
		if started == nil {
			continue
		}
		var m struct{ Msg, HTTP, Admin string }
		if json.Unmarshal(line, &m) == nil && m.Msg == "sandbox-router listening" {
			p.HTTPAddr, p.AdminAddr = m.HTTP, m.Admin
			close(started)
			started = nil
		}
	}
}

func (p *Proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Log returns what the router wrote to stderr so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// WaitReady waits until /readyz answers 200 (the caches synced).
func (p *Proc) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.AdminAddr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("routerproc: not ready: %w\n%s", ctx.Err(), p.Log())
		case <-p.done:
			return fmt.Errorf("routerproc: exited: %v\n%s", p.exitErr(), p.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM, waits for the exit (SIGKILL after 10 s) and returns
// the exit error, if any.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.exitErr()
}

// Kill stops the router at once, as a crash would.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Pid is the router's process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.done }
