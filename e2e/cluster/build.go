package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// mainModule is the module path whose go.mod marks the repository root.
const mainModule = "github.com/sandbox-router/sandbox-router"

// binaries are the paths of the built kube-apiserver and etcd.
type binaries struct {
	apiserver, etcd string
}

// tool is one binary built from the tools module.
type tool struct {
	name, pkg, ldflags string
}

// kubeVersion stamps kube-apiserver the way release builds do, so /version
// reports the tools module's k8s.io/kubernetes version, not v0.0.0-master.
// Keep it in step with e2e/tools/go.mod.
const kubeVersion = "-X k8s.io/component-base/version.gitVersion=v1.37.2" +
	" -X k8s.io/component-base/version.gitMajor=1" +
	" -X k8s.io/component-base/version.gitMinor=37" +
	" -X k8s.io/component-base/version.gitTreeState=clean"

var tools = []tool{
	{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", kubeVersion},
	{"etcd", "go.etcd.io/etcd/server/v3", ""},
}

// repoRoot walks up from the working directory to the go.mod of the main
// module, and failing that from this source file's directory (a demo
// binary started elsewhere, built without -trimpath).
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isMainModule(filepath.Join(dir, "go.mod")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no go.mod of module %s above the working directory", mainModule)
}

func isMainModule(goMod string) bool {
	data, err := os.ReadFile(goMod)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == mainModule
		}
	}
	return false
}

// ensureBinaries builds the tools into e2e/tools/bin when they are missing
// or older than the tools module's go.mod/go.sum. A flock on bin/.lock keeps
// test packages running in parallel from building at the same time.
func ensureBinaries(ctx context.Context, logf func(string, ...any)) (binaries, error) {
	root, err := repoRoot()
	if err != nil {
		return binaries{}, err
	}
	toolsDir := filepath.Join(root, "e2e", "tools")
	binDir := filepath.Join(toolsDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return binaries{}, err
	}
	lock, err := os.OpenFile(filepath.Join(binDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return binaries{}, err
	}
	defer lock.Close() // closing the file releases the lock
	if err := flock(lock); err != nil {
		return binaries{}, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}

	newest, err := newestModTime(filepath.Join(toolsDir, "go.mod"), filepath.Join(toolsDir, "go.sum"))
	if err != nil {
		return binaries{}, fmt.Errorf("tools module: %w", err)
	}
	goBin, err := goCommand()
	if err != nil {
		return binaries{}, err
	}
	for _, tl := range tools {
		out := filepath.Join(binDir, tl.name)
		if fi, err := os.Stat(out); err == nil && fi.ModTime().After(newest) {
			continue
		}
		logf("cluster: building %s from source (a cold build takes minutes)", tl.name)
		start := time.Now()
		tmp := out + ".tmp"
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, "-ldflags="+tl.ldflags, tl.pkg)
		cmd.Dir = toolsDir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if msg, err := cmd.CombinedOutput(); err != nil {
			_ = os.Remove(tmp)
			return binaries{}, fmt.Errorf("go build %s: %w\n%s", tl.pkg, err, msg)
		}
		if err := os.Rename(tmp, out); err != nil {
			return binaries{}, err
		}
		logf("cluster: built %s in %s", tl.name, time.Since(start).Round(time.Millisecond))
	}
	return binaries{
		apiserver: filepath.Join(binDir, "kube-apiserver"),
		etcd:      filepath.Join(binDir, "etcd"),
	}, nil
}

// flock takes an exclusive lock, retrying when a signal interrupts the wait.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

func newestModTime(paths ...string) (time.Time, error) {
	var newest time.Time
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return time.Time{}, err
		}
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	return newest, nil
}

// goCommand finds the go command that runs the tests.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("go command not found in PATH or GOROOT")
}
