package cluster

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var sandboxGVR = schema.GroupVersionResource{Group: "agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxes"}

// The manifests a deployment applies: a namespace, cluster-wide and
// namespaced RBAC for the "router" user, a service account, and an object
// of the CRD's kind, split over two files of a directory beside a
// kustomization.yaml that must be skipped.
const rbacYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: e2e-sandbox-reader
rules:
- apiGroups: ["agents.x-k8s.io"]
  resources: ["sandboxes"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: e2e-sandbox-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: e2e-sandbox-reader
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: router
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: team-a
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: pod-reader
  namespace: team-a
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: router
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sandbox-router
  namespace: team-a
`

const sandboxYAML = `apiVersion: agents.x-k8s.io/v1beta1
kind: Sandbox
metadata:
  name: from-manifest
  namespace: team-a
spec:
  operatingMode: Suspended
---
apiVersion: agents.x-k8s.io/v1alpha1
kind: Sandbox
metadata:
  name: in-default
spec:
  replicas: 0
`

func TestApplyManifestsAndRouterIdentity(t *testing.T) {
	c := Start(t)
	ctx := t.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatalf("ApplyCRDs: %v", err)
	}
	if err := c.ApplyCRDs(ctx); err != nil { // idempotent
		t.Fatalf("ApplyCRDs again: %v", err)
	}

	dir := t.TempDir()
	for name, data := range map[string]string{
		"10-rbac.yaml":       rbacYAML,
		"20-sandbox.yml":     sandboxYAML,
		"kustomization.yaml": "resources: [does-not-exist.yaml]\n",
		"README.md":          "not a manifest",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := ApplyManifests(ctx, c.AdminConfig(), dir); err != nil {
		t.Fatalf("ApplyManifests: %v", err)
	}
	if err := ApplyManifests(ctx, c.AdminConfig(), dir); err != nil { // apply is idempotent
		t.Fatalf("ApplyManifests again: %v", err)
	}

	// The router identity, through a kubeconfig as the router binary gets it.
	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.RouterToken); err != nil {
		t.Fatal(err)
	}
	fromFile, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("load %s: %v", kubeconfig, err)
	}
	// A new binding takes effect once the API server's RBAC informer has
	// seen it, a moment after the write.
	waitAllowed := dynamic.NewForConfigOrDie(c.RouterConfig()).Resource(sandboxGVR).Namespace("team-a")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := waitAllowed.Get(ctx, "from-manifest", metav1.GetOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("get sandbox as router after the binding: %v", err)
		}
	}
	for name, cfg := range map[string]*rest.Config{"RouterConfig": c.RouterConfig(), "kubeconfig": fromFile} {
		t.Run(name, func(t *testing.T) {
			dyn := dynamic.NewForConfigOrDie(cfg)
			got, err := dyn.Resource(sandboxGVR).Namespace("team-a").Get(ctx, "from-manifest", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("get sandbox as router: %v", err)
			}
			if mode, _, _ := unstructured.NestedString(got.Object, "spec", "operatingMode"); mode != "Suspended" {
				t.Errorf("spec.operatingMode = %q, want Suspended", mode)
			}
			// A v1alpha1 object reads through v1beta1 with the schema's
			// default filled in next to the field it was written with.
			alpha, err := dyn.Resource(sandboxGVR).Namespace("default").Get(ctx, "in-default", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("get v1alpha1 sandbox as router: %v", err)
			}
			mode, _, _ := unstructured.NestedString(alpha.Object, "spec", "operatingMode")
			replicas, _, _ := unstructured.NestedInt64(alpha.Object, "spec", "replicas")
			if mode != "Running" || replicas != 0 {
				t.Errorf("v1alpha1 object via v1beta1: operatingMode %q replicas %d, want Running and 0", mode, replicas)
			}
			cs := kubernetes.NewForConfigOrDie(cfg)
			if _, err := cs.CoreV1().Pods("team-a").List(ctx, metav1.ListOptions{}); err != nil {
				t.Errorf("list pods in team-a as router: %v", err)
			}
			if _, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("list pods in default as router: err %v, want Forbidden", err)
			}
			err = dyn.Resource(sandboxGVR).Namespace("team-a").Delete(ctx, "from-manifest", metav1.DeleteOptions{})
			if !apierrors.IsForbidden(err) {
				t.Errorf("delete sandbox as router: err %v, want Forbidden", err)
			}
		})
	}
	if _, err := kubernetes.NewForConfigOrDie(c.AdminConfig()).CoreV1().ServiceAccounts("team-a").Get(ctx, "sandbox-router", metav1.GetOptions{}); err != nil {
		t.Errorf("service account: %v", err)
	}
}
