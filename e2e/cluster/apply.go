package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

const (
	// FieldManager is the server-side apply field manager of ApplyManifests.
	FieldManager = "sandbox-router-e2e"
	// crdWaitTimeout bounds the wait for a CRD to be served when the
	// caller's context has no deadline.
	crdWaitTimeout = 60 * time.Second
	// grantWaitTimeout bounds GrantRouter's wait for the new bindings to
	// take effect when the caller's context has no deadline.
	grantWaitTimeout = 30 * time.Second
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// CRDDir returns the repository's deploy/crds directory.
func CRDDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "deploy", "crds"), nil
}

// ApplyCRDs applies every CRD manifest in deploy/crds as admin and waits
// until each is Established and all its served versions answer in
// discovery and to a list. It is idempotent: call it again after
// StartAPIServer to wait until the restarted server serves them.
func (c *Cluster) ApplyCRDs(ctx context.Context) error {
	dir, err := CRDDir()
	if err != nil {
		return err
	}
	return ApplyManifests(ctx, c.AdminConfig(), dir)
}

// RouterNamespace is the router's own namespace as deploy/ installs it:
// deploy/rbac grants the router its leader-election Lease there, and
// GrantRouter creates it.
const RouterNamespace = "sandbox-router"

// routerUserBindings bind the router's roles to this cluster's non-admin
// user "router" (RouterToken), in place of the ServiceAccount that
// deploy/rbac binds in a real cluster: the ClusterRole (sandboxes and
// pods, cluster-wide), the review ClusterRole, the dashboard's
// ClusterRole (reads of the extensions API), the leader-election Role
// and the xDS EndpointSlice Role in RouterNamespace.
var routerUserBindings = []struct{ role, namespace string }{
	{"sandbox-router", ""},
	{"sandbox-router-access", ""},
	{"sandbox-router-dashboard", ""},
	{"sandbox-router-leader-election", RouterNamespace},
	{"sandbox-router-xds", RouterNamespace},
}

// routerUserBindingsYAML is routerUserBindings as manifests: a
// ClusterRoleBinding for a ClusterRole, a RoleBinding in its namespace
// for a Role, each named after the role with "-e2e-user".
func routerUserBindingsYAML() string {
	var b strings.Builder
	for i, rb := range routerUserBindings {
		kind, roleKind, ns := "ClusterRoleBinding", "ClusterRole", ""
		if rb.namespace != "" {
			kind, roleKind, ns = "RoleBinding", "Role", "\n  namespace: "+rb.namespace
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, `apiVersion: rbac.authorization.k8s.io/v1
kind: %s
metadata:
  name: %s-e2e-user%s
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: %s
  name: %s
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: router
`, kind, rb.role, ns, roleKind, rb.role)
	}
	return b.String()
}

// GrantRouter creates the router's namespace (deploy/base/namespace.yaml),
// applies deploy/rbac as a real install does (the ClusterRole
// sandbox-router and its binding to the ServiceAccount; the
// leader-election Role and RoleBinding in RouterNamespace; the review
// ClusterRole sandbox-router-access; the xDS server's EndpointSlice Role
// in RouterNamespace; the dashboard's read-only ClusterRole
// sandbox-router-dashboard on the extensions API), and binds the roles to
// the user "router" too, so that RouterConfig, RouterToken and a
// WriteKubeconfig file act as the router. It returns once the API server's
// authorizer allows the user every rule of those roles (a new binding
// takes effect a moment after it is written), so a router started next
// sees no transient 403.
func (c *Cluster) GrantRouter(ctx context.Context) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	bindings := filepath.Join(c.Dir, "router-user-bindings.yaml")
	if err := os.WriteFile(bindings, []byte(routerUserBindingsYAML()), 0o600); err != nil {
		return err
	}
	paths := []string{
		filepath.Join(root, "deploy", "base", "namespace.yaml"),
		filepath.Join(root, "deploy", "rbac"),
		filepath.Join(root, "deploy", "rbac", "leader-election"),
		filepath.Join(root, "deploy", "rbac", "access"),
		filepath.Join(root, "deploy", "rbac", "xds"),
		filepath.Join(root, "deploy", "rbac", "dashboard"),
		bindings,
	}
	if err := ApplyManifests(ctx, c.AdminConfig(), paths...); err != nil {
		return err
	}
	objs, err := readManifests(paths)
	if err != nil {
		return err
	}
	return c.waitGranted(ctx, "router", objs)
}

// waitGranted waits until a SubjectAccessReview allows user every verb
// of every rule of the Roles and ClusterRoles among objs (in the Role's
// namespace, or cluster-wide). On this single API server the review is
// answered from the same RBAC cache that authorizes requests.
func (c *Cluster) waitGranted(ctx context.Context, user string, objs []manifest) error {
	type check struct{ ns, verb, group, resource, subresource string }
	var checks []check
	for _, m := range objs {
		kind := m.obj.GetKind()
		if m.obj.GetAPIVersion() != "rbac.authorization.k8s.io/v1" || (kind != "Role" && kind != "ClusterRole") {
			continue
		}
		ns := ""
		if kind == "Role" {
			ns = m.obj.GetNamespace()
			if ns == "" {
				ns = metav1.NamespaceDefault
			}
		}
		rules, _, _ := unstructured.NestedSlice(m.obj.Object, "rules")
		for _, r := range rules {
			rm, _ := r.(map[string]any)
			groups, _, _ := unstructured.NestedStringSlice(rm, "apiGroups")
			resources, _, _ := unstructured.NestedStringSlice(rm, "resources")
			verbs, _, _ := unstructured.NestedStringSlice(rm, "verbs")
			for _, g := range groups {
				for _, res := range resources {
					resource, sub, _ := strings.Cut(res, "/")
					for _, v := range verbs {
						checks = append(checks, check{ns, v, g, resource, sub})
					}
				}
			}
		}
	}
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, grantWaitTimeout)
		defer cancel()
	}
	for _, ch := range checks {
		attrs := authorizationv1.ResourceAttributes{Namespace: ch.ns, Verb: ch.verb, Group: ch.group, Resource: ch.resource, Subresource: ch.subresource}
		if err := WaitAllowed(ctx, cs, user, []string{"system:authenticated"}, attrs, true); err != nil {
			return fmt.Errorf("wait for the grants of user %s: %w", user, err)
		}
	}
	return nil
}

// ApplyManifests server-side applies (field manager FieldManager, forced)
// every object of the multi-document YAML or JSON files at paths, in
// order. A path that is a directory stands for its *.yaml, *.yml and
// *.json files in name order, without kustomization.yaml. Resources are
// mapped through discovery; a namespaced object without a namespace goes
// to "default". After a CustomResourceDefinition, ApplyManifests waits
// until its versions are served, so later documents may be of its kind.
func ApplyManifests(ctx context.Context, cfg *rest.Config, paths ...string) error {
	objs, err := readManifests(paths)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, m := range objs {
		obj := m.obj
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			mapper.Reset() // a CRD may have been added since discovery was read
			mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			return fmt.Errorf("%s: %s %s: %w", m.source, gvk.Kind, obj.GetName(), err)
		}
		var res dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			if obj.GetNamespace() == "" {
				obj.SetNamespace(metav1.NamespaceDefault)
			}
			res = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		} else {
			obj.SetNamespace("")
		}
		data, err := json.Marshal(obj.Object)
		if err != nil {
			return err
		}
		force := true
		if _, err := res.Patch(ctx, obj.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
			return fmt.Errorf("%s: apply %s %s: %w", m.source, gvk.Kind, obj.GetName(), err)
		}
		if mapping.Resource == crdGVR {
			if err := waitCRDServed(ctx, dyn, dc, obj); err != nil {
				return fmt.Errorf("%s: CRD %s: %w", m.source, obj.GetName(), err)
			}
			mapper.Reset()
		}
	}
	return nil
}

type manifest struct {
	source string // file name and document number, for errors
	obj    *unstructured.Unstructured
}

func readManifests(paths []string) ([]manifest, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries { // ReadDir sorts by name
			n := e.Name()
			if e.IsDir() || n == "kustomization.yaml" || n == "kustomization.yml" {
				continue
			}
			if ext := filepath.Ext(n); ext == ".yaml" || ext == ".yml" || ext == ".json" {
				files = append(files, filepath.Join(p, n))
			}
		}
	}
	var out []manifest
	for _, f := range files {
		objs, err := decodeFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func decodeFile(path string) ([]manifest, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(fh, 4096)
	var out []manifest
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if len(m) == 0 { // an empty document (a lone ---)
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if obj.GetKind() == "" || obj.GetAPIVersion() == "" || obj.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d: apiVersion, kind and metadata.name are required", path, doc)
		}
		out = append(out, manifest{source: fmt.Sprintf("%s#%d", path, doc), obj: obj})
	}
}

// waitCRDServed waits, through a watch, until the CRD is Established, and
// then until every served version lists in discovery and answers a list
// (the CRD handler can lag Established by a moment).
func waitCRDServed(ctx context.Context, dyn dynamic.Interface, dc discovery.DiscoveryInterface, applied *unstructured.Unstructured) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, crdWaitTimeout)
		defer cancel()
	}
	crd, err := WaitObject(ctx, dyn.Resource(crdGVR), applied.GetName(), func(u *unstructured.Unstructured) bool {
		return u != nil && conditionTrue(u, "Established")
	})
	if err != nil {
		return fmt.Errorf("not Established: %w", err)
	}

	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	scope, _, _ := unstructured.NestedString(crd.Object, "spec", "scope")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		version, _ := vm["name"].(string)
		if served, _ := vm["served"].(bool); !served || version == "" {
			continue
		}
		gv := group + "/" + version
		gvr := schema.GroupVersionResource{Group: group, Version: version, Resource: plural}
		var last error
		for {
			last = servedOnce(ctx, dyn, dc, gv, gvr, scope)
			if last == nil {
				break
			}
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%s not served: %w (last: %v)", gvr, ctx.Err(), last)
			case <-t.C:
			}
		}
	}
	return nil
}

// servedOnce checks discovery and a one-item list of gvr once.
func servedOnce(ctx context.Context, dyn dynamic.Interface, dc discovery.DiscoveryInterface, gv string, gvr schema.GroupVersionResource, scope string) error {
	list, err := dc.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == gvr.Resource }) {
		return fmt.Errorf("%s not in discovery of %s", gvr.Resource, gv)
	}
	var res dynamic.ResourceInterface = dyn.Resource(gvr)
	if strings.EqualFold(scope, "Namespaced") {
		res = dyn.Resource(gvr).Namespace(metav1.NamespaceDefault)
	}
	_, err = res.List(ctx, metav1.ListOptions{Limit: 1})
	return err
}

// conditionTrue reports whether status.conditions has type t with status
// "True".
func conditionTrue(u *unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == t && m["status"] == "True" {
			return true
		}
	}
	return false
}
