package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

const (
	// buildTimeout bounds a cold build of kube-apiserver, etcd, kubectl or
	// helm from source (minutes on two cores).
	buildTimeout = 30 * time.Minute
	// cmdTimeout bounds one kubectl or helm command.
	cmdTimeout = 2 * time.Minute
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	routerproc.RemoveShared()
	if toolHomeDir.dir != "" {
		os.RemoveAll(toolHomeDir.dir)
	}
	os.Exit(code)
}

// shared is the package's one API server (etcd and kube-apiserver), started
// by the first test that asks and shared by every test and -count run.
// Tests that use it make objects of names of their own (or apply the same
// manifests idempotently), and leave what they made in place.
var shared struct {
	once sync.Once
	c    *cluster.Cluster
	err  error
}

// apiServer returns the shared cluster, with the Sandbox CRD, a stub
// ServiceMonitor CRD (testdata), and the namespaces team-a and team-b,
// each with a Sandbox "s" and a sandbox pod "p". A test that fails prints
// the API server's log.
func apiServer(t *testing.T) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("real etcd and kube-apiserver: skipped in -short mode")
	}
	shared.once.Do(func() { shared.c, shared.err = startCluster() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	c := shared.c
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs(t.Logf)
		}
	})
	return c
}

func startCluster() (*cluster.Cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	c, err := cluster.New(ctx, cluster.Options{Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		if c != nil {
			c.DumpLogs(func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
		}
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := populate(ctx, c); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func populate(ctx context.Context, c *cluster.Cluster) error {
	if err := c.ApplyCRDs(ctx); err != nil {
		return fmt.Errorf("ApplyCRDs: %w", err)
	}
	if err := cluster.ApplyManifests(ctx, c.AdminConfig(), filepath.Join("testdata", "servicemonitor-crd.yaml")); err != nil {
		return fmt.Errorf("ServiceMonitor CRD: %w", err)
	}
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())
	adminDyn := dynamic.NewForConfigOrDie(c.AdminConfig())
	for _, ns := range []string{"team-a", "team-b"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		sb := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
			"metadata": map[string]any{"name": "s"},
			"spec":     map[string]any{"operatingMode": "Running"},
		}}
		if _, err := adminDyn.Resource(sandboxesV1beta1).Namespace(ns).Create(ctx, sb, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, testPod("p"), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// ensureNamespace creates ns unless it exists.
func ensureNamespace(t *testing.T, admin kubernetes.Interface, ns string) {
	t.Helper()
	_, err := admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// tools are the real kubectl and helm, built once per test binary from
// the tools modules (e2e/tools, e2e/tools/helm), cached in e2e/tools/bin.
var tools struct {
	kubectlOnce, helmOnce sync.Once
	kubectl, helm         string
	kubectlErr, helmErr   error
}

func kubectlBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("kubectl built from source: skipped in -short mode")
	}
	tools.kubectlOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		tools.kubectl, tools.kubectlErr = cluster.KubectlBinary(ctx, t.Logf)
	})
	if tools.kubectlErr != nil {
		t.Fatal(tools.kubectlErr)
	}
	return tools.kubectl
}

func helmBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("helm built from source: skipped in -short mode")
	}
	tools.helmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		tools.helm, tools.helmErr = cluster.HelmBinary(ctx, t.Logf)
	})
	if tools.helmErr != nil {
		t.Fatal(tools.helmErr)
	}
	return tools.helm
}

// run runs a tool with args and returns its standard output; a non-zero
// exit is an error that carries its standard error. kubectl and helm keep
// their caches and configuration in a temporary directory of the test,
// never in $HOME.
func run(t *testing.T, bin string, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	home := toolHome(t)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"KUBECACHEDIR="+filepath.Join(home, "kube-cache"),
		"HELM_CACHE_HOME="+filepath.Join(home, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(home, "helm-data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"), // commands that need one name it
	)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w after %s", filepath.Base(bin), strings.Join(args, " "), ctx.Err(), cmdTimeout)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.Bytes())
		}
		return stdout.Bytes(), err
	}
	return stdout.Bytes(), nil
}

func mustRun(t *testing.T, bin string, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := run(t, bin, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// toolHomeDir is one directory per test binary for the tools' caches and
// configuration; TestMain removes it.
var toolHomeDir struct {
	once sync.Once
	dir  string
	err  error
}

func toolHome(t *testing.T) string {
	t.Helper()
	toolHomeDir.once.Do(func() { toolHomeDir.dir, toolHomeDir.err = os.MkdirTemp("", "sandbox-router-deploy-tools-") })
	if toolHomeDir.err != nil {
		t.Fatal(toolHomeDir.err)
	}
	return toolHomeDir.dir
}
