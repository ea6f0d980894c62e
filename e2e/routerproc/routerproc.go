// Package routerproc builds the real sandbox-router binary and runs it as
// its own process for end-to-end tests, benchmarks and the demo. It owns
// that process and nothing else: it is stopped by its PID, and its log is
// kept for the test to print when it failed.
package routerproc

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// shared is the binary Shared builds once per process.
var shared struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Shared builds the router once per process (a test binary's tests all
// run the same code) into a temporary directory that RemoveShared, called
// from TestMain after the tests, deletes.
func Shared() (string, error) {
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "sandbox-router-e2e-"); shared.err == nil {
			shared.bin, shared.err = Build(context.Background(), shared.dir)
		}
	})
	return shared.bin, shared.err
}

// RemoveShared deletes what Shared built, if it built anything.
func RemoveShared() {
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// Build compiles cmd/sandbox-router into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("routerproc: cannot locate the source tree")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "sandbox-router")
	// Static and -trimpath, as make image builds it (images/binary.go):
	// the tests run what ships, and on a fresh machine the image's amd64
	// build reuses the packages compiled here instead of compiling them
	// all again.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/sandbox-router")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOAMD64=v1")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("routerproc: build: %v\n%s", err, out)
	}
	return bin, nil
}

// Options says what to run.
type Options struct {
	// Bin is the router binary (from Build).
	Bin string
	// Args are its flags. Listeners on free loopback ports and no drain
	// delay come first, so Args may override them.
	Args []string
	// OpenFilesSoft and OpenFilesHard, when set, are the router's
	// descriptor limit (RLIMIT_NOFILE) at start, set by the shell that
	// execs it (the router keeps the PID).
	OpenFilesSoft, OpenFilesHard uint64
	// LogPath, when set, receives the router's log (stdout and stderr);
	// otherwise it is kept in memory. Either way Log returns its tail.
	LogPath string
}

// Proc is a running router.
type Proc struct {
	// HTTPAddr and AdminAddr are the bound listener addresses; HTTPSAddr
	// too when the router was given --listen-https, else "".
	HTTPAddr, HTTPSAddr, AdminAddr string
	// XDSAddr is the xDS listener's, when --xds-listen is given;
	// DashboardAddr the dashboard's, when --listen-dashboard is.
	XDSAddr, DashboardAddr string

	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	mu      sync.Mutex
	log     bytes.Buffer // when there is no log file
	logFile *os.File
	err     error
}

// startTimeout bounds the wait for the router's start-up line.
const startTimeout = 30 * time.Second

// Start runs the router and returns once it listens.
func Start(ctx context.Context, opts Options) (*Proc, error) {
	args := append([]string{"--listen-http", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0", "--drain-delay", "0s"}, opts.Args...)
	cmd := exec.Command(opts.Bin, args...)
	if opts.OpenFilesHard > 0 {
		script := fmt.Sprintf(`ulimit -Sn %d && ulimit -Hn %d && exec "$0" "$@"`, cmp.Or(opts.OpenFilesSoft, opts.OpenFilesHard), opts.OpenFilesHard)
		cmd = exec.Command("/bin/sh", append([]string{"-c", script, opts.Bin}, args...)...)
	}
	p := &Proc{cmd: cmd, logPath: opts.LogPath, done: make(chan struct{})}
	// It dies with its parent; its own process group keeps a terminal's
	// Ctrl-C from reaching it before the parent stops it by PID.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if opts.LogPath != "" {
		f, err := os.Create(opts.LogPath)
		if err != nil {
			return nil, fmt.Errorf("routerproc: %w", err)
		}
		p.logFile = f
		p.cmd.Stdout = f
	} else {
		p.cmd.Stdout = io.Discard
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		p.closeLog()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("routerproc: %w", err)
	}
	started := make(chan struct{})
	logged := make(chan struct{})
	go func() {
		p.readLog(stderr, started)
		close(logged)
	}()
	go func() {
		<-logged // Wait closes the pipe: read it to the end first
		err := p.cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		p.closeLog()
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
		// The capacity limit makes append copy: the scanner's buffer
		// past the line holds input not read yet.
		p.writeLog(append(line[:len(line):len(line)], '\n'))
		if started == nil {
			continue
		}
		var m struct{ Msg, HTTP, HTTPS, Admin, XDS, Dashboard string }
		if json.Unmarshal(line, &m) == nil && m.Msg == "sandbox-router listening" {
			p.HTTPAddr, p.HTTPSAddr, p.AdminAddr, p.XDSAddr, p.DashboardAddr = m.HTTP, m.HTTPS, m.Admin, m.XDS, m.Dashboard
			close(started)
			started = nil
		}
	}
	// A line too long for the scanner: keep the rest as it is.
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		p.writeLog(buf[:n])
		if err != nil {
			return
		}
	}
}

func (p *Proc) writeLog(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logFile != nil {
		p.logFile.Write(b)
	} else {
		p.log.Write(b)
	}
}

func (p *Proc) closeLog() {
	if p.logFile != nil {
		p.logFile.Close()
	}
}

// ExitErr is the router's exit status, once Exited is closed.
func (p *Proc) ExitErr() error { return p.exitErr() }

func (p *Proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// logTailBytes is how much of its log Log returns.
const logTailBytes = 64 << 10

// Log returns the tail of what the router logged so far, from whole lines.
func (p *Proc) Log() string {
	var data []byte
	if p.logPath != "" {
		var err error
		if data, err = os.ReadFile(p.logPath); err != nil {
			return fmt.Sprintf("(no log: %v)", err)
		}
	} else {
		p.mu.Lock()
		data = bytes.Clone(p.log.Bytes())
		p.mu.Unlock()
	}
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
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

// stopGrace is how long the router gets after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// Stop sends SIGTERM, waits for the exit (SIGKILL after stopGrace) and
// returns the exit error, if any. Stopping a router that already exited
// returns how it exited.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("routerproc: router (pid %d) ignored SIGTERM for %s and was killed", p.Pid(), stopGrace)
	}
	return p.exitErr()
}

// Signal sends sig to the router (SIGTERM starts its drain; a second one
// ends the drain delay early).
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill stops the router at once, as a crash would.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Pid is the router's process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.done }
