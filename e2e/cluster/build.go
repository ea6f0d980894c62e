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

// tool is one binary built from a tools module.
type tool struct {
	name, pkg, ldflags string
	// module is the tools module's directory below e2e/tools ("" for
	// e2e/tools itself).
	module string
	// static builds with CGO_ENABLED=0, as the tool's release build does
	// (helm; kubectl shares kube-apiserver's build instead).
	static bool
}

// kubeVersion stamps kube-apiserver the way release builds do, so /version
// reports the tools module's k8s.io/kubernetes version, not v0.0.0-master.
// Keep it in step with e2e/tools/go.mod.
const kubeVersion = "-X k8s.io/component-base/version.gitVersion=v1.37.2" +
	" -X k8s.io/component-base/version.gitMajor=1" +
	" -X k8s.io/component-base/version.gitMinor=37" +
	" -X k8s.io/component-base/version.gitTreeState=clean"

// helmVersion stamps helm as its release build does (its Makefile's
// LDFLAGS for a tag), so `helm version` reports v4.3.2. Keep it in step
// with e2e/tools/helm/go.mod.
const helmVersion = "-X helm.sh/helm/v4/internal/version.version=v4.3.2" +
	" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

// tools are built by every cluster; kubectl and helm only when a test asks
// (KubectlBinary, HelmBinary): most e2e packages never run them.
var (
	tools = []tool{
		{name: "kube-apiserver", pkg: "k8s.io/kubernetes/cmd/kube-apiserver", ldflags: kubeVersion},
		{name: "etcd", pkg: "go.etcd.io/etcd/server/v3"},
	}
	// kubectl is built as kube-apiserver is (same module, same cgo
	// setting) and after it, so that it reuses kube-apiserver's compiled
	// packages instead of compiling client-go and the rest again.
	kubectlTool = tool{name: "kubectl", pkg: "k8s.io/kubernetes/cmd/kubectl", ldflags: kubeVersion}
	helmTool    = tool{name: "helm", pkg: "helm.sh/helm/v4/cmd/helm", ldflags: helmVersion, module: "helm", static: true}
)

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

// ensureBinaries builds kube-apiserver and etcd into e2e/tools/bin when
// they are missing or older than the tools module's go.mod/go.sum.
func ensureBinaries(ctx context.Context, logf func(string, ...any)) (binaries, error) {
	paths, err := ensureTools(ctx, logf, ".lock", tools...)
	if err != nil {
		return binaries{}, err
	}
	return binaries{apiserver: paths[0], etcd: paths[1]}, nil
}

// KubectlBinary returns the path of a real kubectl built from the tools
// module's k8s.io/kubernetes (cmd/kubectl, the API server's version),
// building it into e2e/tools/bin first when it is missing or older than
// the module's go.mod/go.sum, after kube-apiserver and etcd (whose build
// it reuses). logf receives progress lines (nil discards them).
func KubectlBinary(ctx context.Context, logf func(string, ...any)) (string, error) {
	if _, err := ensureBinaries(ctx, logf); err != nil {
		return "", err
	}
	paths, err := ensureTools(ctx, logf, ".lock-kubectl", kubectlTool)
	if err != nil {
		return "", err
	}
	return paths[0], nil
}

// HelmBinary returns the path of the real helm CLI (helm.sh/helm/v4
// cmd/helm, built as its release is from the module e2e/tools/helm),
// building it into e2e/tools/bin first as KubectlBinary does.
func HelmBinary(ctx context.Context, logf func(string, ...any)) (string, error) {
	paths, err := ensureTools(ctx, logf, ".lock-helm", helmTool)
	if err != nil {
		return "", err
	}
	return paths[0], nil
}

// BuildAll builds every tool of the harness that is missing or stale, in
// the order the tests would (kube-apiserver and etcd, kubectl, helm), and
// returns their paths by name. A make target runs it before the e2e tests
// (e2e/cluster/buildtools), so that the builds neither count against a
// test package's -timeout nor compete for the CPU with the tests of other
// packages.
func BuildAll(ctx context.Context, logf func(string, ...any)) (map[string]string, error) {
	b, err := ensureBinaries(ctx, logf)
	if err != nil {
		return nil, err
	}
	kubectl, err := KubectlBinary(ctx, logf)
	if err != nil {
		return nil, err
	}
	helm, err := HelmBinary(ctx, logf)
	if err != nil {
		return nil, err
	}
	return map[string]string{"kube-apiserver": b.apiserver, "etcd": b.etcd, "kubectl": kubectl, "helm": helm}, nil
}

// ensureTools builds each tool into e2e/tools/bin when it is missing or
// older than its module's go.mod/go.sum, and returns their paths. A flock
// on bin/<lockName> keeps test packages running in parallel from building
// the same tools at the same time; each set of tools has its own lock, so
// a package waiting for kube-apiserver does not wait for helm too.
func ensureTools(ctx context.Context, logf func(string, ...any), lockName string, want ...tool) ([]string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	toolsDir := filepath.Join(root, "e2e", "tools")
	binDir := filepath.Join(toolsDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(binDir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close() // closing the file releases the lock
	if err := flock(lock); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	goBin, err := goCommand()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, tl := range want {
		modDir := filepath.Join(toolsDir, tl.module)
		newest, err := newestModTime(filepath.Join(modDir, "go.mod"), filepath.Join(modDir, "go.sum"))
		if err != nil {
			return nil, fmt.Errorf("tools module: %w", err)
		}
		out := filepath.Join(binDir, tl.name)
		paths = append(paths, out)
		if fi, err := os.Stat(out); err == nil && fi.ModTime().After(newest) {
			continue
		}
		logf("cluster: building %s from source (a cold build takes minutes)", tl.name)
		start := time.Now()
		tmp := out + ".tmp"
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, "-ldflags="+tl.ldflags, tl.pkg)
		cmd.Dir = modDir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if tl.static {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
		}
		if msg, err := cmd.CombinedOutput(); err != nil {
			_ = os.Remove(tmp)
			return nil, fmt.Errorf("go build %s: %w\n%s", tl.pkg, err, msg)
		}
		if err := os.Rename(tmp, out); err != nil {
			return nil, err
		}
		logf("cluster: built %s in %s", tl.name, time.Since(start).Round(time.Millisecond))
	}
	return paths, nil
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
