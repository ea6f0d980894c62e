package deploy

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// dashboardRules are the dashboard's (Cluster)Role's: reads of the
// extensions API its catalog shows, never writes.
var dashboardRules = []any{
	map[string]any{"apiGroups": []any{extensionsGroup}, "resources": []any{"sandboxtemplates", "sandboxwarmpools", "sandboxclaims"}, "verbs": []any{"get", "list", "watch"}},
}

const (
	idDashboardService = "/Service sandbox-router/sandbox-router-dashboard"
	idDashboardRole    = "rbac.authorization.k8s.io/ClusterRole /sandbox-router-dashboard"
	idDashboardCRB     = "rbac.authorization.k8s.io/ClusterRoleBinding /sandbox-router-dashboard"
	idDashboardIngress = "networking.k8s.io/Ingress sandbox-router/sandbox-router-dashboard"
)

// ingressRuleFor returns the NetworkPolicy's ingress rule for port,
// or nil.
func ingressRuleFor(np *object, port int) any {
	rules, _ := get(np.m, "spec", "ingress").([]any)
	for _, r := range rules {
		if reflect.DeepEqual(get(r, "ports"), []any{map[string]any{"port": port}}) {
			return r
		}
	}
	return nil
}

// TestDashboardOverlay: overlays/dashboard is overlays/kubernetes-authz
// with the dashboard's listener and port, its Service, its NetworkPolicy
// rule, and deploy/rbac/dashboard.
func TestDashboardOverlay(t *testing.T) {
	authz := mustRender(t, "overlays/kubernetes-authz")
	objs := mustRender(t, "overlays/dashboard")
	want := append(ids(authz), idDashboardService, idDashboardRole, idDashboardCRB)
	sort.Strings(want)
	if got := ids(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("overlays/dashboard renders\n  %v\nwant overlays/kubernetes-authz and the dashboard's Service and RBAC\n  %v", got, want)
	}
	c := container(t, objs)
	if a := args(c); !slices.Contains(a, "--listen-dashboard=:8090") || !slices.Contains(a, "--authz-mode=kubernetes") || slices.Contains(a, "--dashboard-anonymous") {
		t.Errorf("args %v: want --listen-dashboard=:8090 with --authz-mode=kubernetes and sign-in", a)
	}
	if !slices.ContainsFunc(get(c, "ports").([]any), func(p any) bool {
		return reflect.DeepEqual(p, map[string]any{"name": "dashboard", "containerPort": 8090})
	}) {
		t.Errorf("container ports %v lack dashboard 8090", get(c, "ports"))
	}
	svc := objs[idDashboardService].m
	if got := get(svc, "spec", "ports"); !reflect.DeepEqual(got, []any{map[string]any{"name": "dashboard", "port": 8090, "targetPort": "dashboard"}}) {
		t.Errorf("dashboard Service ports %v", got)
	}
	if got := get(svc, "spec", "selector"); !reflect.DeepEqual(got, get(objs[idService].m, "spec", "selector")) {
		t.Errorf("dashboard Service selects %v, the router's Service %v", got, get(objs[idService].m, "spec", "selector"))
	}
	if ingressRuleFor(objs[idNetPol], 8090) == nil {
		t.Errorf("NetworkPolicy ingress %v has no rule for 8090", get(objs[idNetPol].m, "spec", "ingress"))
	}
	checkDashboardRBAC(t, objs)
}

func checkDashboardRBAC(t *testing.T, objs map[string]*object) {
	t.Helper()
	if got := get(objs[idDashboardRole].m, "rules"); !reflect.DeepEqual(got, dashboardRules) {
		t.Errorf("dashboard ClusterRole rules = %v, want %v", got, dashboardRules)
	}
	crb := objs[idDashboardCRB].m
	if got := get(crb, "roleRef"); !reflect.DeepEqual(got, map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sandbox-router-dashboard"}) {
		t.Errorf("dashboard ClusterRoleBinding roleRef = %v", got)
	}
	if got := get(crb, "subjects"); !reflect.DeepEqual(got, routerSubject) {
		t.Errorf("dashboard ClusterRoleBinding subjects = %v, want %v", got, routerSubject)
	}
}

func TestDashboardRBAC(t *testing.T) {
	objs := mustRender(t, "rbac/dashboard")
	if got, want := ids(objs), []string{idDashboardRole, idDashboardCRB}; !reflect.DeepEqual(got, want) {
		t.Fatalf("deploy/rbac/dashboard renders %v, want %v", got, want)
	}
	checkDashboardRBAC(t, objs)
}

// TestHelmDashboard renders the chart's dashboard values one at a time:
// the flags, the container port, the Service, the NetworkPolicy rule, the
// Ingress and the RBAC each follow their value, and nothing of the
// dashboard is rendered when it is off.
func TestHelmDashboard(t *testing.T) {
	const ns = "sandbox-router"
	dashboardArgs := func(objs map[string]*object) []string {
		var out []string
		for _, a := range args(container(t, objs)) {
			if strings.HasPrefix(a, "--listen-dashboard") || strings.HasPrefix(a, "--dashboard-") {
				out = append(out, a)
			}
		}
		return out
	}

	t.Run("off", func(t *testing.T) {
		objs := mustTemplate(t, "sandbox-router", ns, "--set", "authz.mode=kubernetes")
		for _, id := range ids(objs) {
			if strings.Contains(id, "dashboard") {
				t.Errorf("dashboard.enabled=false renders %s", id)
			}
		}
		if a := dashboardArgs(objs); a != nil {
			t.Errorf("dashboard flags %v with the dashboard off", a)
		}
		if ingressRuleFor(objs[idNetPol], 8090) != nil {
			t.Error("a NetworkPolicy rule for the dashboard's port with the dashboard off")
		}
	})

	t.Run("sign-in", func(t *testing.T) {
		objs := mustTemplate(t, "sandbox-router", ns, "--set", "authz.mode=kubernetes,dashboard.enabled=true")
		if got, want := dashboardArgs(objs), []string{"--listen-dashboard=:8090"}; !reflect.DeepEqual(got, want) {
			t.Errorf("dashboard flags %v, want %v", got, want)
		}
		svc := objs[idDashboardService]
		if svc == nil {
			t.Fatalf("no %s in %v", idDashboardService, ids(objs))
		}
		if get(svc.m, "spec", "type") != "ClusterIP" {
			t.Errorf("dashboard Service type %v, want ClusterIP", get(svc.m, "spec", "type"))
		}
		if objs[idDashboardIngress] != nil {
			t.Error("an Ingress without dashboard.ingress.enabled")
		}
		checkDashboardRBAC(t, objs)
	})

	t.Run("every value", func(t *testing.T) {
		objs := mustTemplate(t, "sandbox-router", ns, "-f", chartDir+"/ci/dashboard-values.yaml",
			"--set", "dashboard.extensions=false,dashboard.service.type=LoadBalancer,dashboard.secureCookies=true")
		if got, want := dashboardArgs(objs), []string{"--listen-dashboard=:8091", "--dashboard-router-url=https://sandboxes.example.com", "--dashboard-secure-cookies", "--dashboard-extensions=false"}; !reflect.DeepEqual(got, want) {
			t.Errorf("dashboard flags %v, want %v", got, want)
		}
		c := container(t, objs)
		if !slices.ContainsFunc(get(c, "ports").([]any), func(p any) bool {
			return reflect.DeepEqual(p, map[string]any{"name": "dashboard", "containerPort": 8091})
		}) {
			t.Errorf("container ports %v lack dashboard 8091", get(c, "ports"))
		}
		svc := objs[idDashboardService].m
		if got := get(svc, "spec", "ports"); !reflect.DeepEqual(got, []any{map[string]any{"name": "dashboard", "port": 80, "targetPort": "dashboard"}}) {
			t.Errorf("dashboard Service ports %v", got)
		}
		if get(svc, "spec", "type") != "LoadBalancer" || get(svc, "metadata", "annotations", "example.com/owner") != "platform" {
			t.Errorf("dashboard Service type %v, annotations %v", get(svc, "spec", "type"), get(svc, "metadata", "annotations"))
		}
		rule := ingressRuleFor(objs[idNetPol], 8091)
		if got := get(rule, "from", 0, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"); got != "ingress-nginx" {
			t.Errorf("NetworkPolicy rule for 8091 %v: want from the ingress-nginx namespace only", rule)
		}
		// extensions=false: no extension reads to grant.
		if objs[idDashboardRole] != nil || objs[idDashboardCRB] != nil {
			t.Errorf("dashboard.extensions=false still renders the dashboard's RBAC: %v", ids(objs))
		}
		ing := objs[idDashboardIngress]
		if ing == nil {
			t.Fatalf("no %s in %v", idDashboardIngress, ids(objs))
		}
		if got := get(ing.m, "spec", "ingressClassName"); got != "nginx" {
			t.Errorf("ingressClassName %v", got)
		}
		if got := get(ing.m, "spec", "tls"); !reflect.DeepEqual(got, []any{map[string]any{"hosts": []any{"dashboard.sandboxes.example.com"}, "secretName": "dashboard-tls"}}) {
			t.Errorf("Ingress tls %v", got)
		}
		rules := get(ing.m, "spec", "rules")
		if get(rules, 0, "host") != "dashboard.sandboxes.example.com" ||
			!reflect.DeepEqual(get(rules, 0, "http", "paths", 0, "backend", "service"), map[string]any{"name": "sandbox-router-dashboard", "port": map[string]any{"name": "dashboard"}}) {
			t.Errorf("Ingress rules %v: want the host, to the dashboard Service's dashboard port", rules)
		}
		if got := get(ing.m, "metadata", "annotations", "nginx.ingress.kubernetes.io/proxy-buffering"); got != "off" {
			t.Errorf("Ingress annotations %v", get(ing.m, "metadata", "annotations"))
		}
		checkRouterAccepts(t, args(c))
	})

	t.Run("anonymous, namespaced", func(t *testing.T) {
		objs := mustTemplate(t, "sandbox-router", ns, "-f", chartDir+"/ci/namespaced-values.yaml")
		if got, want := dashboardArgs(objs), []string{"--listen-dashboard=:8090", "--dashboard-anonymous"}; !reflect.DeepEqual(got, want) {
			t.Errorf("dashboard flags %v, want %v", got, want)
		}
		if objs[idDashboardRole] != nil || objs[idDashboardCRB] != nil {
			t.Errorf("cluster-wide dashboard RBAC with resolver.namespaces: %v", ids(objs))
		}
		for _, team := range []string{"team-a", "team-b"} {
			role := objs["rbac.authorization.k8s.io/Role "+team+"/sandbox-router-dashboard"]
			rb := objs["rbac.authorization.k8s.io/RoleBinding "+team+"/sandbox-router-dashboard"]
			if role == nil || rb == nil {
				t.Errorf("no dashboard Role and RoleBinding in %s: %v", team, ids(objs))
				continue
			}
			if got := get(role.m, "rules"); !reflect.DeepEqual(got, dashboardRules) {
				t.Errorf("%s: dashboard Role rules %v, want %v", team, got, dashboardRules)
			}
			if got := get(rb.m, "roleRef"); !reflect.DeepEqual(got, map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sandbox-router-dashboard"}) {
				t.Errorf("%s: dashboard RoleBinding roleRef %v", team, got)
			}
			if got := get(rb.m, "subjects"); !reflect.DeepEqual(got, routerSubject) {
				t.Errorf("%s: dashboard RoleBinding subjects %v", team, got)
			}
		}
	})
}

// TestHelmDashboardNotes: the release notes say how to reach the
// dashboard and how to get a token to sign in with, or warn that anyone
// who reaches it sees every sandbox.
func TestHelmDashboardNotes(t *testing.T) {
	helm := helmBin(t)
	notes := func(args ...string) string {
		out := string(mustRun(t, helm, nil, append([]string{"install", "sandbox-router", chartDir, "--namespace", "sandbox-router", "--dry-run=client"}, args...)...))
		_, n, ok := strings.Cut(out, "\nNOTES:\n")
		if !ok {
			t.Fatalf("helm install --dry-run printed no NOTES:\n%s", out)
		}
		return n
	}
	n := notes("--set", "authz.mode=kubernetes,dashboard.enabled=true")
	for _, want := range []string{
		"kubectl -n sandbox-router port-forward service/sandbox-router-dashboard 8090:8090",
		"http://localhost:8090/",
		"kubectl -n <namespace> create token <service account>",
	} {
		if !strings.Contains(n, want) {
			t.Errorf("NOTES lack %q:\n%s", want, n)
		}
	}
	n = notes("--set", "dashboard.enabled=true,dashboard.anonymous=true")
	if !strings.Contains(n, "sees every sandbox") || !strings.Contains(n, "networkPolicy.dashboardFrom") || strings.Contains(n, "create token") {
		t.Errorf("anonymous dashboard NOTES:\n%s", n)
	}
	if n := notes(); strings.Contains(n, "dashboard") {
		t.Errorf("NOTES mention the dashboard while it is off:\n%s", n)
	}
}
