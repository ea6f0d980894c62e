package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinary builds the real binary, routes a request through it, and
// checks that SIGTERM drains and exits 0 and that bad flags exit 2 with a
// clear message.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sandbox-router")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Header.Get("X-Forwarded-Host"))
	})}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	defer backend.Close()

	routes := filepath.Join(dir, "routes.yaml")
	os.WriteFile(routes, []byte("sandboxes:\n  - {name: sb1, podIP: 127.0.0.1}\n"), 0o600)
	cmd := exec.Command(bin, "--routes", routes, "--allow-loopback-pod-ip", "--listen-http", "127.0.0.1:0",
		"--listen-admin", "127.0.0.1:0", "--drain-delay", "0s", "--access-log", "off")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The start-up log line names the bound addresses.
	var httpAddr, adminAddr string
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		var m map[string]any
		if json.Unmarshal(lines.Bytes(), &m) == nil && m["msg"] == "sandbox-router listening" {
			httpAddr, adminAddr = m["http"].(string), m["admin"].(string)
			break
		}
	}
	if httpAddr == "" {
		t.Fatal("no start-up line")
	}
	go io.Copy(io.Discard, stderr)

	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/", nil)
	req.Header.Set("X-Sandbox-ID", "sb1")
	req.Header.Set("X-Sandbox-Port", fmt.Sprint(bln.Addr().(*net.TCPAddr).Port))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello from 127.0.0.1:") {
		t.Fatalf("proxied: %d %q", resp.StatusCode, body)
	}
	if r, err := http.Get("http://" + adminAddr + "/readyz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", r, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("router did not exit after SIGTERM")
	}

	out, err := exec.Command(bin, "--routes", routes, "--idle-timeout", "forever").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), `invalid value "forever" for flag -idle-timeout`) {
		t.Fatalf("bad flag: %v %s", err, out)
	}
}

// TestAccessLogUpstreamBooleans: upstream's --access-log=true and =false
// mean stdout and off, never files named true and false.
func TestAccessLogUpstreamBooleans(t *testing.T) {
	t.Chdir(t.TempDir())
	for dest, on := range map[string]bool{"true": true, "false": false} {
		w, closeLog, err := openAccessLog(dest, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		closeLog()
		if (w != nil) != on {
			t.Errorf("--access-log=%s: writer %v, want on=%v", dest, w, on)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Errorf("--access-log=%s made a file", dest)
		}
	}
}
