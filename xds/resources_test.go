package xds

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sandbox-router/sandbox-router/resolver"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenResources are every kind of resource the server sends, for one
// running and one suspended sandbox.
func goldenResources() map[string]proto.Message {
	o := EnvoyOptions{activityInterval: defaultActivityInterval}
	o.defaults()
	routers := []netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:8080"), netip.MustParseAddrPort("10.96.0.11:8080")}
	n := &namer{domains: []string{"sandboxes.example.com"}, defaultPort: 8888}
	running := resolver.Result{State: resolver.StateRunning, Namespace: "team-a", Name: "sb-1", PodIP: netip.MustParseAddr("10.244.1.7")}
	suspended := resolver.Result{State: resolver.StateSuspended, Namespace: "team-a", Name: "sb-2"}
	host1, host2 := "sb-1.team-a.sandboxes.example.com", "3000-sb-2.team-a.sandboxes.example.com:443"
	vh := func(host string, r resolver.Result) proto.Message {
		_, m := virtualHost(RouteConfigName+"/"+host, host, podAddr(n.hostTarget(host), r, false))
		return m
	}
	grpcHost1, grpcHost2 := "50051-sb-1.team-a.sandboxes.example.com", "50051-sb-2.team-a.sandboxes.example.com"
	ep := func(host string, r resolver.Result) proto.Message {
		t := n.hostTarget(host)
		_, m := grpcEndpoints(clusterName(t), podAddr(t, r, false), routers, routersVersion(routers))
		return m
	}
	return map[string]proto.Message{
		"envoy-listener":               envoyListener(o),
		"envoy-route-configuration":    envoyRouteConfig(o),
		"envoy-cluster-pods":           envoyPodsCluster(o),
		"envoy-cluster-router":         envoyRouterCluster(o),
		"envoy-endpoints-router":       loadAssignment(RouterCluster, routers),
		"envoy-virtual-host-running":   vh(host1, running),
		"envoy-virtual-host-suspended": vh(host2, suspended),
		"grpc-listener":                grpcListener(grpcHost1, n.hostTarget(grpcHost1)),
		"grpc-cluster":                 grpcCluster(clusterName(n.hostTarget(grpcHost1)), true),
		"grpc-endpoints-running":       ep(grpcHost1, running),
		"grpc-endpoints-suspended":     ep(grpcHost2, suspended),
	}
}

// TestResourcesValidate runs go-control-plane's ValidateAll on every
// resource and on the contents of every Any inside it, at any depth.
func TestResourcesValidate(t *testing.T) {
	for name, m := range goldenResources() {
		if err := validateDeep(m); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

type allValidator interface{ ValidateAll() error }

func validateDeep(m proto.Message) error {
	v, ok := m.(allValidator)
	if !ok {
		return &missingValidator{string(m.ProtoReflect().Descriptor().FullName())}
	}
	if err := v.ValidateAll(); err != nil {
		return err
	}
	var err error
	walk(m.ProtoReflect(), func(a *anypb.Any) {
		if err != nil {
			return
		}
		inner, uerr := a.UnmarshalNew()
		if uerr != nil {
			err = uerr
			return
		}
		err = validateDeep(inner)
	})
	return err
}

type missingValidator struct{ name string }

func (e *missingValidator) Error() string { return e.name + " has no ValidateAll" }

// walk calls fn for every Any in m.
func walk(m protoreflect.Message, fn func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		fn(a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fn)
				return true
			})
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				walk(v.List().Get(i).Message(), fn)
			}
		case fd.Message() != nil && !fd.IsMap() && !fd.IsList():
			walk(v.Message(), fn)
		}
		return true
	})
}

// TestGoldenResources compares each resource, as protojson, with its file
// in testdata/golden (go test -run Golden -update rewrites them).
func TestGoldenResources(t *testing.T) {
	for name, m := range goldenResources() {
		got, err := protojson.MarshalOptions{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// protojson varies its whitespace on purpose; fix it.
		var buf bytes.Buffer
		if err := json.Indent(&buf, got, "", "  "); err != nil {
			t.Fatal(err)
		}
		buf.WriteByte('\n')
		path := filepath.Join("testdata", "golden", name+".json")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./xds -run Golden -update)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s differs from %s:\n%s", name, path, buf.Bytes())
		}
	}
}

// TestForgedPodAddresses: a pod address a real pod cannot have (a forged
// status) is never published; the sandbox goes to the router instead.
func TestForgedPodAddresses(t *testing.T) {
	tg := target{key: resolver.Key{Namespace: "ns", Name: "a"}, port: 9901, ok: true}
	for _, ip := range []string{"127.0.0.1", "::1", "0.0.0.0", "169.254.169.254", "fe80::1", "224.0.0.1", "ff02::1"} {
		r := resolver.Result{State: resolver.StateRunning, PodIP: netip.MustParseAddr(ip)}
		if got := podAddr(tg, r, false); got.IsValid() {
			t.Errorf("%s published as %s", ip, got)
		}
		if v, _ := virtualHost("sandboxes/a", "a", podAddr(tg, r, false)); v != "router" {
			t.Errorf("%s: virtual host version %q, want router", ip, v)
		}
	}
	r := resolver.Result{State: resolver.StateRunning, PodIP: netip.MustParseAddr("127.0.0.1")}
	if got := podAddr(tg, r, true); got != netip.MustParseAddrPort("127.0.0.1:9901") {
		t.Errorf("loopback allowed: %s", got)
	}
	r.PodIP = netip.MustParseAddr("10.244.0.9")
	if got := podAddr(tg, r, false); got != netip.MustParseAddrPort("10.244.0.9:9901") {
		t.Errorf("pod address: %s", got)
	}
}
