package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

const (
	// routerStopGrace is how long the router gets after SIGTERM (its drain
	// is 2 s in the demo) before SIGKILL.
	routerStopGrace = 15 * time.Second
	// logTailBytes is how much of the router's log an error shows.
	logTailBytes = 8 << 10
)

// buildRouter compiles cmd/sandbox-router into dir.
func buildRouter(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "sandbox-router")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/sandbox-router")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the router: %w\n%s", err, out)
	}
	return bin, nil
}

// routerProc is the router binary running as its own process.
type routerProc struct {
	cmd                 *exec.Cmd
	logPath             string
	httpAddr, adminAddr string // from its "listening" log line
	done                chan struct{}
	err                 error // exit status; valid once done is closed
}

// startRouter runs bin with args, its output in logPath, and returns once
// it logged the addresses it listens on (so port 0 works).
func startRouter(ctx context.Context, bin, logPath string, args ...string) (*routerProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &routerProc{cmd: exec.Command(bin, args...), logPath: logPath, done: make(chan struct{})}
	p.cmd.Stdout = logFile
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	// Dies with the demo; its own process group keeps a terminal's Ctrl-C
	// from reaching it before the demo stops it by PID.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start the router: %w", err)
	}
	listening := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(line)
			logFile.Write([]byte{'\n'})
			var m struct{ Msg, HTTP, Admin string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "sandbox-router listening" {
				select {
				case listening <- [2]string{m.HTTP, m.Admin}:
				default:
				}
			}
		}
		io.Copy(logFile, stderr) // a line too long for the scanner
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case addrs := <-listening:
		p.httpAddr, p.adminAddr = addrs[0], addrs[1]
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("router exited at start: %v\n%s", p.err, p.logTail())
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), p.stop())
	case <-t.C:
		return nil, errors.Join(fmt.Errorf("router did not listen within %s\n%s", readyTimeout, p.logTail()), p.stop())
	}
}

// stop sends SIGTERM to the router's PID and waits; SIGKILL after
// routerStopGrace.
func (p *routerProc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(routerStopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("router (pid %d) ignored SIGTERM for %s and was killed", p.cmd.Process.Pid, routerStopGrace)
}

func (p *routerProc) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}

// waitRouter waits until /readyz answers 200 (the caches synced) and every
// running sandbox answers through the router.
func waitRouter(ctx context.Context, p *routerProc, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string, header http.Header) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	waitFor := func(what, url string, header http.Header) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			code, err := get(url, header)
			if err == nil && code == http.StatusOK {
				return nil
			}
			select {
			case <-tick.C:
			case <-p.done:
				return fmt.Errorf("router exited: %v", p.err)
			case <-ctx.Done():
				return fmt.Errorf("%s: not 200 within %s (last: %d %v)", what, readyTimeout, code, err)
			}
		}
	}
	if err := waitFor("router /readyz", "http://"+p.adminAddr+"/readyz", nil); err != nil {
		return err
	}
	for _, sb := range sandboxes {
		if sb.running {
			h := http.Header{"X-Sandbox-Id": {sb.name}, "X-Sandbox-Namespace": {sb.namespace}}
			if err := waitFor("sandbox "+sb.namespace+"/"+sb.name, "http://"+p.httpAddr+"/", h); err != nil {
				return err
			}
		}
	}
	return nil
}
