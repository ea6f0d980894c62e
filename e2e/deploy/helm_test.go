package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// variant is one documented configuration of the chart: a values file
// under ci/ (none for the defaults) and what the router's ServiceAccount
// must be granted with it, nothing more.
type variant struct {
	name   string // the values file's stem; "default" for no file
	grants func(releaseNS string) grants
	// automount: the pod mounts the ServiceAccount's token.
	automount bool
}

func (v variant) valuesArgs() []string {
	if v.name == "default" {
		return nil
	}
	return []string{"-f", filepath.Join(chartDir, "ci", v.name+"-values.yaml")}
}

var allNamespaces = map[string]bool{"": true}

var variants = []variant{
	{"default", func(ns string) grants { return grants{namespaces: allNamespaces, patch: true, leaseNS: ns} }, true},
	{"static", func(string) grants { return grants{} }, false},
	{"kubernetes-authz", func(ns string) grants {
		return grants{namespaces: allNamespaces, patch: true, leaseNS: ns, reviews: true}
	}, true},
	{"tls-mtls", func(string) grants { return grants{namespaces: allNamespaces, reviews: true} }, true},
	{"namespaced", func(string) grants {
		teams := map[string]bool{"team-a": true, "team-b": true}
		return grants{namespaces: teams, patch: true, extensions: teams}
	}, true},
	{"monitoring", func(ns string) grants { return grants{namespaces: allNamespaces, patch: true, leaseNS: ns} }, true},
	{"xds", func(ns string) grants {
		return grants{namespaces: allNamespaces, patch: true, leaseNS: ns, endpointSlicesNS: ns}
	}, true},
	{"dashboard", func(ns string) grants {
		return grants{namespaces: allNamespaces, patch: true, leaseNS: ns, reviews: true, extensions: allNamespaces}
	}, true},
}

// TestHelmVariantsAreTheCIFiles: every values file under ci/ is a variant
// the tests know, and the other way round.
func TestHelmVariantsAreTheCIFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, f := range files {
		got = append(got, strings.TrimSuffix(filepath.Base(f), "-values.yaml"))
	}
	for _, v := range variants[1:] {
		want = append(want, v.name)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ci/ holds %v, the tests know %v", got, want)
	}
}

// helmTemplate renders the chart as release in namespace ns.
func helmTemplate(t *testing.T, release, ns string, args ...string) ([]*object, []byte, error) {
	t.Helper()
	out, err := run(t, helmBin(t), nil, append([]string{"template", release, chartDir, "--namespace", ns}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	objs, err := decodeYAML(out, "helm template "+release)
	return objs, out, err
}

func mustTemplate(t *testing.T, release, ns string, args ...string) map[string]*object {
	t.Helper()
	objs, _, err := helmTemplate(t, release, ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*object{}
	for _, o := range objs {
		if _, dup := byID[o.id()]; dup {
			t.Fatalf("helm template renders %s twice", o.id())
		}
		byID[o.id()] = o
	}
	return byID
}

// TestHelmLint runs helm lint --strict (warnings fail) with the defaults
// and with every variant's values.
func TestHelmLint(t *testing.T) {
	helm := helmBin(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out := mustRun(t, helm, nil, append([]string{"lint", "--strict", chartDir, "--namespace", "sandbox-router"}, v.valuesArgs()...)...)
			if !strings.Contains(string(out), "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// TestHelmSchemaRejectsBadValues: values.schema.json (or, for what a
// schema cannot say, the templates) refuse values the router would refuse
// or Kubernetes would not take, in helm lint and helm template alike,
// while every documented variant passes (TestHelmLint).
func TestHelmSchemaRejectsBadValues(t *testing.T) {
	helm := helmBin(t)
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"negative replicas", []string{"--set", "replicaCount=-1"}, "replicaCount"},
		{"replicas not a number", []string{"--set-string", "replicaCount=two"}, "replicaCount"},
		{"unknown authz mode", []string{"--set", "authz.mode=oauth"}, "authz"},
		{"two review modes", []string{"--set", "authz.mode=tokenreview\\,kubernetes"}, "authz"},
		{"unknown resolver", []string{"--set", "resolver.mode=dns"}, "resolver"},
		{"unknown key", []string{"--set", "replicas=3"}, "replicas"},
		{"misspelt nested key", []string{"--set", "activator.idleTimout=10m"}, "idleTimout"},
		{"bad duration", []string{"--set", "activator.idleTimeout=10 minutes"}, "idleTimeout"},
		{"negative max held", []string{"--set", "activator.maxHeldTotal=-5"}, "maxHeldTotal"},
		{"bad digest", []string{"--set", "image.digest=sha256:xyz"}, "digest"},
		{"bad pull policy", []string{"--set", "image.pullPolicy=Sometimes"}, "pullPolicy"},
		{"boolean as string", []string{"--set-string", "tls.enabled=yes"}, "enabled"},
		{"kubernetes authz with static routes", []string{"--set", "resolver.mode=static,authz.mode=kubernetes"}, "authz"},
		{"scoped tokens without a key", []string{"--set", "authz.mode=scoped-token"}, "scopedToken"},
		{"a key without scoped tokens", []string{"--set", "authz.scopedToken.publicKeysSecret=keys"}, "publicKeysSecret"},
		{"minting with allow-all", []string{"--set", "authz.mint.signingKeySecret=k,authz.mint.signingKeyFile=k1.key"}, "mode"},
		{"minting without the public keys", []string{"--set", "authz.mode=kubernetes\\,scoped-token,authz.scopedToken.v1SecretName=s,authz.mint.signingKeySecret=k,authz.mint.signingKeyFile=k1.key"}, "publicKeysSecret"},
		{"sessions with allow-all", []string{"--set", "authz.sessions.cookieName=s,routing.baseDomains={example.com}"}, "mode"},
		{"bad cookie name", []string{"--set", "authz.mode=tokenreview,authz.sessions.cookieName=a;b"}, "cookieName"},
		{"bad path prefix", []string{"--set", "routing.pathRoutingPrefix=sandboxes/"}, "pathRoutingPrefix"},
		{"TLS without a Secret", []string{"--set", "tls.enabled=true"}, "secretName"},
		{"no HTTP without TLS", []string{"--set", "tls.disableHTTP=true"}, "disableHTTP"},
		{"mTLS without TLS", []string{"--set", "mtls.mode=required,mtls.clientCASecret=ca"}, "enabled"},
		{"mTLS without a CA", []string{"--set", "tls.enabled=true,tls.secretName=t,mtls.mode=optional"}, "clientCASecret"},
		{"unknown mTLS mode", []string{"--set", "mtls.mode=on"}, "mode"},
		{"replicas without leader election", []string{"--set", "leaderElection.enabled=false"}, "replicaCount"},
		{"port out of range", []string{"--set", "ports.http=70000"}, "http"},
		{"bad namespace", []string{"--set", "resolver.namespaces={Team_A}"}, "namespaces"},
		{"unknown Sandbox version", []string{"--set", "resolver.sandboxVersions={v2}"}, "sandboxVersions"},
		{"extra arg without dashes", []string{"--set", "extraArgs={pprof}"}, "extraArgs"},
		{"bad PDB", []string{"--set", "podDisruptionBudget.maxUnavailable=-1"}, "maxUnavailable"},
		{"ServiceAccount of your own without a name", []string{"--set", "serviceAccount.create=false"}, "name"},
		{"unknown route field", []string{"--set", "resolver.mode=static,resolver.routes.sandboxes[0].name=a,resolver.routes.sandboxes[0].address=10.0.0.1"}, "address"},
		{"unknown log level", []string{"--set", "logLevel=verbose"}, "logLevel"},
		{"MCP without a host", []string{"--set", "authz.mode=kubernetes,mcp.enabled=true"}, "host"},
		{"MCP with allow-all", []string{"--set", "mcp.enabled=true,mcp.host=mcp.example.com"}, "mode"},
		{"MCP with static routes", []string{"--set", "resolver.mode=static,authz.mode=scoped-token,authz.scopedToken.v1SecretName=s,mcp.enabled=true,mcp.host=mcp.example.com"}, "mode"},
		{"bad MCP host", []string{"--set", "authz.mode=kubernetes,mcp.enabled=true,mcp.host=MCP_host"}, "host"},
		{"MCP public URL with a path", []string{"--set", "authz.mode=kubernetes,mcp.enabled=true,mcp.host=mcp.example.com,mcp.publicURL=https://mcp.example.com/mcp"}, "publicURL"},
		{"dashboard router URL with a query", []string{"--set", "authz.mode=kubernetes,dashboard.enabled=true,dashboard.routerURL=https://r.example.com/?a=b"}, "routerURL"},
		{"dashboard router URL a shell would split", []string{"--set", "authz.mode=kubernetes,dashboard.enabled=true,dashboard.routerURL=https://r.example.com/$(id)"}, "routerURL"},
		{"dashboard router URL not http", []string{"--set", "authz.mode=kubernetes,dashboard.enabled=true,dashboard.routerURL=ftp://r.example.com"}, "routerURL"},
		{"dashboard port out of range", []string{"--set", "ports.dashboard=0"}, "dashboard"},
		{"dashboard Service of an unknown type", []string{"--set", "dashboard.service.type=ExternalName"}, "type"},
		{"misspelt dashboard key", []string{"--set", "dashboard.anonymus=true"}, "anonymus"},
		{"dashboard Ingress without a host", []string{"--set", "authz.mode=kubernetes,dashboard.enabled=true,dashboard.ingress.enabled=true"}, "host"},
		{"dashboard Ingress without the dashboard", []string{"--set", "dashboard.ingress.enabled=true,dashboard.ingress.host=d.example.com"}, "enabled"},
		{"bad dashboard Ingress host", []string{"--set", "authz.mode=kubernetes,dashboard.enabled=true,dashboard.ingress.enabled=true,dashboard.ingress.host=Dash_board"}, "host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, cmd := range [][]string{
				{"lint", "--strict", chartDir},
				{"template", "sandbox-router", chartDir},
			} {
				out, err := run(t, helm, nil, append(cmd, tc.args...)...)
				if err == nil {
					t.Errorf("helm %s %v: accepted\n%s", cmd[0], tc.args, out)
					continue
				}
				if msg := err.Error() + string(out); !strings.Contains(msg, tc.want) {
					t.Errorf("helm %s %v: the error does not name %q:\n%s", cmd[0], tc.args, tc.want, msg)
				}
			}
		})
	}
}

// TestHelmTemplateRefuses: what no schema can say (one value compared
// with another) the templates refuse; helm lint does not run their fail,
// so only helm template is asked.
func TestHelmTemplateRefuses(t *testing.T) {
	helm := helmBin(t)
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"xDS with static routes", []string{"--set", "xds.enabled=true,resolver.mode=static"}, "xds.enabled"},
		{"MCP host a base domain", []string{"--set", "authz.mode=kubernetes,mcp.enabled=true,mcp.host=example.com,routing.baseDomains={example.com}"}, "mcp.host"},
		// The router refuses the same: a dashboard under allow-all would
		// show every sandbox to whoever reaches it, unless that is meant.
		{"dashboard with allow-all", []string{"--set", "dashboard.enabled=true"}, "dashboard.anonymous=true"},
		{"dashboard with static routes", []string{"--set", "dashboard.enabled=true,dashboard.anonymous=true,resolver.mode=static"}, "cluster resolver"},
		{"dashboard secure cookies without sign-in", []string{"--set", "dashboard.enabled=true,dashboard.anonymous=true,dashboard.secureCookies=true"}, "dashboard.anonymous turns off"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, helm, nil, append([]string{"template", "sandbox-router", chartDir}, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template %v: accepted\n%s", tc.args, out)
			}
			if msg := err.Error() + string(out); !strings.Contains(msg, tc.want) {
				t.Errorf("helm template %v: the error does not name %q:\n%s", tc.args, tc.want, msg)
			}
		})
	}
}

// schemaLeaves returns the dotted paths of the values the schema
// describes: an object with fixed properties (additionalProperties false)
// is walked into, anything else is one value.
func schemaLeaves(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	var out []string
	var walk func(prefix string, s map[string]any)
	walk = func(prefix string, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false || len(props) == 0 {
			out = append(out, prefix)
			return
		}
		for k, p := range props {
			if prefix == "" && k == "global" { // Helm's own
				continue
			}
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			walk(name, p.(map[string]any))
		}
	}
	walk("", root)
	sort.Strings(out)
	return out
}

// TestHelmValuesDocumented: the schema, values.yaml and the README's table
// name the same values.
func TestHelmValuesDocumented(t *testing.T) {
	leaves := schemaLeaves(t)
	if len(leaves) < 50 {
		t.Fatalf("the schema describes only %d values: %v", len(leaves), leaves)
	}

	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	var inValues []string
	for _, l := range leaves {
		if _, ok := lookup(values, l); ok {
			inValues = append(inValues, l)
		} else {
			t.Errorf("values.yaml has no %s (the schema describes it)", l)
		}
	}
	// And nothing in values.yaml that the schema does not describe.
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			if slices.Contains(leaves, name) {
				continue
			}
			sub, ok := v.(map[string]any)
			if !ok {
				t.Errorf("values.yaml has %s, which the schema does not describe", name)
				continue
			}
			walk(name, sub)
		}
	}
	walk("", values)

	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9.]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		documented = append(documented, m[1])
	}
	sort.Strings(documented)
	if !reflect.DeepEqual(documented, leaves) {
		for _, l := range leaves {
			if !slices.Contains(documented, l) {
				t.Errorf("README.md's table lacks %s", l)
			}
		}
		for _, d := range documented {
			if !slices.Contains(leaves, d) {
				t.Errorf("README.md's table has %s, which is not a value", d)
			}
		}
	}
}

// lookup finds a dotted path in nested maps.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestHelmVariants renders each variant and checks what it promises: the
// token mounted only when the router uses the API, RBAC objects for
// exactly the access it needs, Secrets mounted read-only with mode 0440,
// the hardened pod, and arguments the router binary itself accepts.
func TestHelmVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			const ns = "sandbox-router"
			objs := mustTemplate(t, "sandbox-router", ns, v.valuesArgs()...)
			d := objs[idDeployment]
			if d == nil {
				t.Fatalf("no %s in %v", idDeployment, ids(objs))
			}
			pod := get(d.m, "spec", "template", "spec")
			if got := get(pod, "automountServiceAccountToken"); got != v.automount {
				t.Errorf("automountServiceAccountToken %v, want %v", got, v.automount)
			}
			if sa := objs[idSA]; sa == nil || get(sa.m, "automountServiceAccountToken") != false {
				t.Errorf("the ServiceAccount must exist and not mount its token by default: %v", sa)
			}
			checkHardened(t, pod)
			checkRBACObjects(t, objs, v.grants(ns))
			vols, _ := get(pod, "volumes").([]any)
			for _, vol := range vols {
				if sec := get(vol, "secret"); sec != nil && get(sec, "defaultMode") != 0o440 {
					t.Errorf("volume %v: defaultMode %v, want 0440", get(vol, "name"), get(sec, "defaultMode"))
				}
			}
			c := container(t, objs)
			mounts, _ := get(c, "volumeMounts").([]any)
			for _, m := range mounts {
				if get(m, "readOnly") != true {
					t.Errorf("volume mount %v is not read-only", m)
				}
			}
			checkRouterAccepts(t, args(c))
		})
	}
}

// checkHardened: non-root 65532, read-only root, no capabilities, no
// privilege escalation, RuntimeDefault seccomp.
func checkHardened(t *testing.T, pod any) {
	t.Helper()
	psc := get(pod, "securityContext")
	for k, want := range map[string]any{"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532} {
		if got := get(psc, k); got != want {
			t.Errorf("pod securityContext.%s %v, want %v", k, got, want)
		}
	}
	if got := get(psc, "seccompProfile", "type"); got != "RuntimeDefault" {
		t.Errorf("seccompProfile %v", got)
	}
	sc := get(pod, "containers", 0, "securityContext")
	if get(sc, "allowPrivilegeEscalation") != false || get(sc, "readOnlyRootFilesystem") != true ||
		!reflect.DeepEqual(get(sc, "capabilities", "drop"), []any{"ALL"}) || get(sc, "capabilities", "add") != nil {
		t.Errorf("container securityContext %v", sc)
	}
}

// checkRBACObjects: the rendered (Cluster)Roles grant g and nothing else
// (the API server's view of the same is TestHelmOnAPIServer's).
func checkRBACObjects(t *testing.T, objs map[string]*object, g grants) {
	t.Helper()
	var got []string
	for _, o := range objs {
		if o.group() != "rbac.authorization.k8s.io" || !strings.HasSuffix(o.kind(), "Role") {
			continue
		}
		for _, r := range get(o.m, "rules").([]any) {
			for _, res := range get(r, "resources").([]any) {
				for _, verb := range get(r, "verbs").([]any) {
					got = append(got, fmt.Sprintf("%s %s %s", o.namespace(), res, verb))
				}
			}
		}
	}
	var want []string
	for ns := range g.namespaces {
		verbs := []string{"get", "list", "watch"}
		if g.patch {
			verbs = append(verbs, "patch")
		}
		for _, v := range verbs {
			want = append(want, fmt.Sprintf("%s sandboxes %s", ns, v))
		}
		for _, v := range []string{"get", "list", "watch"} {
			want = append(want, fmt.Sprintf("%s pods %s", ns, v))
		}
	}
	if g.leaseNS != "" {
		for _, v := range []string{"get", "create", "update"} {
			want = append(want, fmt.Sprintf("%s leases %s", g.leaseNS, v))
		}
	}
	if g.reviews {
		want = append(want, " tokenreviews create", " subjectaccessreviews create")
	}
	if g.endpointSlicesNS != "" {
		want = append(want, g.endpointSlicesNS+" endpointslices list", g.endpointSlicesNS+" endpointslices watch")
	}
	for ns := range g.extensions {
		for _, r := range extensionResources {
			for _, v := range []string{"get", "list", "watch"} {
				want = append(want, fmt.Sprintf("%s %s %s", ns, r, v))
			}
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RBAC rules (namespace resource verb)\n  %q\nwant\n  %q", got, want)
	}
}

// checkRouterAccepts runs the router binary with the rendered arguments,
// outside any cluster: it must get past its configuration checks (a
// refused configuration exits 2) and fail only where it starts its
// resolver, for want of the in-cluster service account or of the routes
// file the pod would mount (exit 1).
func checkRouterAccepts(t *testing.T, args []string) {
	t.Helper()
	bin, err := routerproc.Shared()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBERNETES_") && !strings.HasPrefix(e, "SANDBOX_ROUTER_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("the router with %q kept running outside a cluster:\n%s", args, out)
	case errors.As(err, &ee) && ee.ExitCode() == 1 &&
		(strings.Contains(string(out), "not in a cluster") || strings.Contains(string(out), "/etc/sandbox-router/routes.yaml")):
		// Past the configuration, stopped by the missing cluster or file.
	default:
		t.Errorf("the router refuses %q (%v):\n%s", args, err, out)
	}
}
