package deploy

import (
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// get walks maps (string keys) and lists (int keys) below v.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestEveryYAMLDocumentParses(t *testing.T) {
	var files int
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == chartsDir {
				return filepath.SkipDir // Helm templates, tested by helm_test.go
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		files++
		objs, err := decodeDocuments(path)
		if err != nil {
			t.Error(err)
			return nil
		}
		if len(objs) == 0 {
			t.Errorf("%s: no documents", path)
		}
		if d.Name() == "kustomization.yaml" {
			if _, _, err := readKustomization(filepath.Dir(path)); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("only %d YAML files under %s: wrong directory?", files, deployDir)
	}
}

// kustomizations returns every directory under deploy/ with a
// kustomization.yaml.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func mustRender(t *testing.T, rel string) map[string]*object {
	t.Helper()
	objs, err := render(filepath.Join(deployDir, rel))
	if err != nil {
		t.Fatalf("render %s: %v", rel, err)
	}
	byID := map[string]*object{}
	for _, o := range objs {
		byID[o.id()] = o
	}
	return byID
}

func ids(objs map[string]*object) []string {
	out := make([]string, 0, len(objs))
	for id := range objs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func TestEveryKustomizationRenders(t *testing.T) {
	dirs := kustomizations(t)
	if len(dirs) < 6 {
		t.Fatalf("found only %v", dirs)
	}
	for _, dir := range dirs {
		if _, err := render(dir); err != nil {
			t.Errorf("render %s: %v", dir, err)
		}
	}
}

// The objects of the router's installation, by kustomize identity.
const (
	idNamespace   = "/Namespace /sandbox-router"
	idSA          = "/ServiceAccount sandbox-router/sandbox-router"
	idClusterRole = "rbac.authorization.k8s.io/ClusterRole /sandbox-router"
	idCRB         = "rbac.authorization.k8s.io/ClusterRoleBinding /sandbox-router"
	idDeployment  = "apps/Deployment sandbox-router/sandbox-router"
	idService     = "/Service sandbox-router/sandbox-router"
	idPDB         = "policy/PodDisruptionBudget sandbox-router/sandbox-router"
	idNetPol      = "networking.k8s.io/NetworkPolicy sandbox-router/sandbox-router"
	idAccessRole  = "rbac.authorization.k8s.io/ClusterRole /sandbox-router-access"
	idAccessCRB   = "rbac.authorization.k8s.io/ClusterRoleBinding /sandbox-router-access"
	idLeaseRole   = "rbac.authorization.k8s.io/Role sandbox-router/sandbox-router-leader-election"
	idLeaseRB     = "rbac.authorization.k8s.io/RoleBinding sandbox-router/sandbox-router-leader-election"
)

// routerRules are the ClusterRole's (and the namespaced Role's): the
// resolver's reads, and the activator's merge patches of sandboxes (not
// their status).
var routerRules = []any{
	map[string]any{"apiGroups": []any{"agents.x-k8s.io"}, "resources": []any{"sandboxes"}, "verbs": []any{"get", "list", "watch", "patch"}},
	map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get", "list", "watch"}},
}

// leaseRules are the leader-election Role's: what client-go's LeaseLock
// does.
var leaseRules = []any{
	map[string]any{"apiGroups": []any{"coordination.k8s.io"}, "resources": []any{"leases"}, "verbs": []any{"get", "create", "update"}},
}

// accessRules are the review ClusterRole's: TokenReviews and
// SubjectAccessReviews, create only.
var accessRules = []any{
	map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"tokenreviews"}, "verbs": []any{"create"}},
	map[string]any{"apiGroups": []any{"authorization.k8s.io"}, "resources": []any{"subjectaccessreviews"}, "verbs": []any{"create"}},
}

// routerSubject is the ServiceAccount every binding must name.
var routerSubject = []any{map[string]any{"kind": "ServiceAccount", "name": "sandbox-router", "namespace": "sandbox-router"}}

func container(t *testing.T, objs map[string]*object) map[string]any {
	t.Helper()
	d := objs[idDeployment]
	if d == nil {
		t.Fatalf("no %s in %v", idDeployment, ids(objs))
	}
	c, _ := get(d.m, "spec", "template", "spec", "containers", 0).(map[string]any)
	if c == nil {
		t.Fatal("Deployment has no container")
	}
	return c
}

func args(c map[string]any) []string {
	var out []string
	for _, a := range get(c, "args").([]any) {
		out = append(out, a.(string))
	}
	return out
}

func TestRBACRules(t *testing.T) {
	cluster := mustRender(t, "rbac")
	wantIDs := []string{idClusterRole, idCRB, idLeaseRole, idLeaseRB}
	sort.Strings(wantIDs)
	if got, want := ids(cluster), wantIDs; !reflect.DeepEqual(got, want) {
		t.Fatalf("deploy/rbac renders %v, want %v", got, want)
	}
	if got := get(cluster[idClusterRole].m, "rules"); !reflect.DeepEqual(got, routerRules) {
		t.Errorf("ClusterRole rules = %v, want only get/list/watch/patch on sandboxes and get/list/watch on pods: %v", got, routerRules)
	}
	crb := cluster[idCRB].m
	if got := get(crb, "roleRef"); !reflect.DeepEqual(got, map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sandbox-router"}) {
		t.Errorf("ClusterRoleBinding roleRef = %v", got)
	}
	if got := get(crb, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("ClusterRoleBinding subjects = %v, want %v", got, routerSubject)
	}

	// The Lease, in the router's namespace only; the same objects as
	// rbac/leader-election renders on its own.
	if got := get(cluster[idLeaseRole].m, "rules"); !reflect.DeepEqual(got, leaseRules) {
		t.Errorf("leader-election Role rules = %v, want %v", got, leaseRules)
	}
	lrb := cluster[idLeaseRB].m
	if got := get(lrb, "roleRef"); !reflect.DeepEqual(got, map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sandbox-router-leader-election"}) {
		t.Errorf("leader-election RoleBinding roleRef = %v", got)
	}
	if got := get(lrb, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("leader-election RoleBinding subjects = %v, want %v", got, routerSubject)
	}
	if got := ids(mustRender(t, "rbac/leader-election")); !reflect.DeepEqual(got, []string{idLeaseRole, idLeaseRB}) {
		t.Errorf("deploy/rbac/leader-election renders %v", got)
	}

	// The reviews of --authz-mode tokenreview and kubernetes: create
	// TokenReviews and SubjectAccessReviews, nothing else, and only in
	// rbac/access (overlays/kubernetes-authz adds it).
	access := mustRender(t, "rbac/access")
	if got := ids(access); !reflect.DeepEqual(got, []string{idAccessRole, idAccessCRB}) {
		t.Fatalf("deploy/rbac/access renders %v", got)
	}
	if got := get(access[idAccessRole].m, "rules"); !reflect.DeepEqual(got, accessRules) {
		t.Errorf("review ClusterRole rules = %v, want %v", got, accessRules)
	}
	if got := get(access[idAccessCRB].m, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("review ClusterRoleBinding subjects = %v, want %v", got, routerSubject)
	}

	// The xDS server's read of the router Service's EndpointSlices: list
	// and watch, in the router's namespace only (overlays/xds adds it).
	xdsRBAC := mustRender(t, "rbac/xds")
	xdsRole := xdsRBAC["rbac.authorization.k8s.io/Role sandbox-router/sandbox-router-xds"]
	xdsRB := xdsRBAC["rbac.authorization.k8s.io/RoleBinding sandbox-router/sandbox-router-xds"]
	if len(xdsRBAC) != 2 || xdsRole == nil || xdsRB == nil {
		t.Fatalf("deploy/rbac/xds renders %v", ids(xdsRBAC))
	}
	wantXDS := []any{map[string]any{"apiGroups": []any{"discovery.k8s.io"}, "resources": []any{"endpointslices"}, "verbs": []any{"list", "watch"}}}
	if got := get(xdsRole.m, "rules"); !reflect.DeepEqual(got, wantXDS) {
		t.Errorf("xds Role rules = %v, want %v", got, wantXDS)
	}
	if got := get(xdsRB.m, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("xds RoleBinding subjects = %v, want %v", got, routerSubject)
	}

	// The namespaced template: the ClusterRole's rules, the same subject,
	// no namespace until stamped, and no Lease (granted once, above).
	ns := mustRender(t, "rbac/namespaced")
	role := ns["rbac.authorization.k8s.io/Role /sandbox-router"]
	rb := ns["rbac.authorization.k8s.io/RoleBinding /sandbox-router"]
	if len(ns) != 2 || role == nil || rb == nil {
		t.Fatalf("deploy/rbac/namespaced renders %v, want a Role and a RoleBinding without namespace", ids(ns))
	}
	if got := get(role.m, "rules"); !reflect.DeepEqual(got, routerRules) {
		t.Errorf("Role rules = %v, want the ClusterRole's %v", got, routerRules)
	}
	if got := get(rb.m, "roleRef", "kind"); got != "Role" {
		t.Errorf("RoleBinding roleRef kind = %v", got)
	}
	if got := get(rb.m, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("RoleBinding subjects = %v, want %v", got, routerSubject)
	}
}

func TestBaseRunsTheClusterResolver(t *testing.T) {
	base := mustRender(t, "base")
	// No review ClusterRole: allow-all never asks the API server about
	// callers.
	want := []string{idNamespace, idService, idSA, idPDB, idDeployment, idNetPol, idClusterRole, idCRB, idLeaseRole, idLeaseRB}
	sort.Strings(want)
	if got := ids(base); !reflect.DeepEqual(got, want) {
		t.Fatalf("deploy/base renders\n  %v\nwant\n  %v", got, want)
	}
	spec := get(base[idDeployment].m, "spec", "template", "spec")
	if get(spec, "serviceAccountName") != "sandbox-router" || get(spec, "automountServiceAccountToken") != true {
		t.Errorf("pod spec must run as sandbox-router with its token mounted: %v", spec)
	}
	if get(spec, "volumes") != nil {
		t.Errorf("base pod has volumes %v; the routes ConfigMap belongs to overlays/static", get(spec, "volumes"))
	}
	c := container(t, base)
	for _, a := range args(c) {
		if strings.HasPrefix(a, "--routes") || strings.HasPrefix(a, "--kubeconfig") || strings.HasPrefix(a, "--namespaces") {
			t.Errorf("base arg %s: base runs the in-cluster resolver over all namespaces", a)
		}
	}
	// The leader election's namespace and identity, from the downward API.
	wantEnv := map[string]string{"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
	gotEnv := map[string]string{}
	for _, e := range get(c, "env").([]any) {
		if name, ok := get(e, "name").(string); ok {
			path, _ := get(e, "valueFrom", "fieldRef", "fieldPath").(string)
			gotEnv[name] = path
		}
	}
	for name, path := range wantEnv {
		if gotEnv[name] != path {
			t.Errorf("env %s from fieldRef %q, want %q (downward API)", name, gotEnv[name], path)
		}
	}
	if got := get(c, "readinessProbe", "httpGet", "path"); got != "/readyz" {
		t.Errorf("readiness probe path %v, want /readyz", got)
	}
	if got := get(c, "livenessProbe", "httpGet", "path"); got != "/healthz" {
		t.Errorf("liveness probe path %v, want /healthz", got)
	}

	// Egress: pods anywhere, and the API server's ports.
	np := base[idNetPol].m
	if types := get(np, "spec", "policyTypes"); !slices.Contains(types.([]any), any("Egress")) {
		t.Fatalf("NetworkPolicy policyTypes %v: egress is not governed", types)
	}
	var pods bool
	ports := map[int]bool{}
	for _, r := range get(np, "spec", "egress").([]any) {
		if to := get(r, "to"); to != nil && get(r, "ports") == nil {
			for _, peer := range to.([]any) {
				if sel, ok := get(peer, "namespaceSelector").(map[string]any); ok && len(sel) == 0 && get(peer, "podSelector") == nil {
					pods = true
				}
			}
		}
		if get(r, "to") == nil {
			for _, p := range get(r, "ports").([]any) {
				if n, ok := get(p, "port").(int); ok {
					ports[n] = true
				}
			}
		}
	}
	if !pods || !ports[443] || !ports[6443] {
		t.Errorf("NetworkPolicy egress must allow all pods (any port) and 443/6443 anywhere: pods %v ports %v", pods, ports)
	}
}

func TestStaticOverlay(t *testing.T) {
	objs := mustRender(t, "overlays/static")
	for _, id := range ids(objs) {
		if strings.HasPrefix(id, "rbac.authorization.k8s.io/") {
			t.Errorf("the static resolver needs no RBAC (no activator, no leader election), got %s", id)
		}
	}
	cm := objs["/ConfigMap sandbox-router/sandbox-router-routes"]
	if cm == nil {
		t.Fatalf("no routes ConfigMap in the router's namespace: %v", ids(objs))
	}
	if _, ok := get(cm.m, "data", "routes.yaml").(string); !ok {
		t.Error("routes ConfigMap has no routes.yaml")
	}
	c := container(t, objs)
	if !slices.Contains(args(c), "--routes=/etc/sandbox-router/routes.yaml") {
		t.Errorf("args %v lack --routes", args(c))
	}
	spec := get(objs[idDeployment].m, "spec", "template", "spec")
	if got := get(spec, "volumes", 0, "configMap", "name"); got != "sandbox-router-routes" {
		t.Errorf("volume configMap %v", got)
	}
	if got := get(c, "volumeMounts", 0, "mountPath"); got != "/etc/sandbox-router" {
		t.Errorf("mount path %v", got)
	}
	if get(spec, "automountServiceAccountToken") != false {
		t.Error("the static router must not mount a service-account token")
	}
	// Pods anywhere (the sandboxes), and no API server.
	egress := get(objs[idNetPol].m, "spec", "egress").([]any)
	if len(egress) != 1 || get(egress[0], "ports") != nil || get(egress[0], "to", 0, "namespaceSelector") == nil {
		t.Errorf("static NetworkPolicy egress %v, want only pods in any namespace", egress)
	}
}

func TestKubernetesAuthzOverlay(t *testing.T) {
	base := mustRender(t, "base")
	objs := mustRender(t, "overlays/kubernetes-authz")
	want := append(ids(base), idAccessRole, idAccessCRB)
	sort.Strings(want)
	if got := ids(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("overlays/kubernetes-authz renders %v, want the base and the review ClusterRole: %v", got, want)
	}
	if got := get(objs[idAccessRole].m, "rules"); !reflect.DeepEqual(got, accessRules) {
		t.Errorf("review ClusterRole rules = %v, want %v", got, accessRules)
	}
	if got := get(objs[idAccessCRB].m, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("review ClusterRoleBinding subjects = %v, want %v", got, routerSubject)
	}
	if a := args(container(t, objs)); !slices.Contains(a, "--authz-mode=kubernetes") {
		t.Errorf("args %v lack --authz-mode=kubernetes", a)
	}
}

func TestNamespacedOverlay(t *testing.T) {
	objs := mustRender(t, "overlays/namespaced")
	if objs[idClusterRole] != nil || objs[idCRB] != nil {
		t.Errorf("no cluster-wide RBAC with --namespaces, got %v", ids(objs))
	}
	var listed []string
	for _, a := range args(container(t, objs)) {
		if v, ok := strings.CutPrefix(a, "--namespaces="); ok {
			listed = append(listed, strings.Split(v, ",")...)
		}
	}
	// The Lease stays granted in the router's namespace.
	if objs[idLeaseRole] == nil || objs[idLeaseRB] == nil {
		t.Errorf("overlays/namespaced lacks the leader-election Role and RoleBinding in sandbox-router: %v", ids(objs))
	}
	var granted []string
	for _, o := range objs {
		if o.kind() == "RoleBinding" && o.id() != idLeaseRB {
			granted = append(granted, o.namespace())
			if got := get(o.m, "subjects"); !reflect.DeepEqual(got, routerSubject) {
				t.Errorf("%s subjects %v, want %v", o.id(), got, routerSubject)
			}
			if objs["rbac.authorization.k8s.io/Role "+o.namespace()+"/sandbox-router"] == nil {
				t.Errorf("%s: no Role sandbox-router beside it", o.id())
			}
		}
	}
	sort.Strings(listed)
	sort.Strings(granted)
	if len(listed) == 0 || !reflect.DeepEqual(listed, granted) {
		t.Errorf("--namespaces %v, RoleBindings in %v: they must be the same", listed, granted)
	}
}
