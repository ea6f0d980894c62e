package kube

import (
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func container(probe *corev1.Probe) corev1.Container {
	return corev1.Container{
		Name:           "app",
		Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8888}, {Name: "grpc", ContainerPort: 9000}},
		ReadinessProbe: probe,
	}
}

func httpProbe(mut func(*corev1.HTTPGetAction)) *corev1.Probe {
	g := &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}
	if mut != nil {
		mut(g)
	}
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: g}, TimeoutSeconds: 2}
}

// TestReadReadiness checks which probes the router runs itself and which
// make a pod opaque (its readiness told by the Ready condition only).
func TestReadReadiness(t *testing.T) {
	service := "health"
	always := corev1.ContainerRestartPolicyAlways
	one := func(c resolver.Check) resolver.Readiness {
		return resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{c}}
	}
	opaque := resolver.Readiness{Opaque: true}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want resolver.Readiness
	}{
		{"no probe", corev1.PodSpec{Containers: []corev1.Container{container(nil)}}, resolver.Readiness{}},
		{"http by port name", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(nil))}},
			one(resolver.Check{Kind: resolver.CheckHTTP, Port: 8888, TimeoutSeconds: 2, Path: "/ready"})},
		{"https with headers and query", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) {
			g.Scheme, g.Path, g.Port = corev1.URISchemeHTTPS, "healthz?full=1", intstr.FromInt32(8443)
			g.HTTPHeaders = []corev1.HTTPHeader{{Name: "Host", Value: "app.local"}, {Name: "X-Probe", Value: "1"}}
		}))}}, one(resolver.Check{Kind: resolver.CheckHTTPS, Port: 8443, TimeoutSeconds: 2, Path: "/healthz?full=1", Header: "Host: app.local\nX-Probe: 1\n"})},
		{"empty path", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) { g.Path = "" }))}},
			one(resolver.Check{Kind: resolver.CheckHTTP, Port: 8888, TimeoutSeconds: 2, Path: "/"})},
		{"tcp", corev1.PodSpec{Containers: []corev1.Container{container(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8888)}}})}},
			one(resolver.Check{Kind: resolver.CheckTCP, Port: 8888, TimeoutSeconds: 1})},
		{"grpc", corev1.PodSpec{Containers: []corev1.Container{container(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000, Service: &service}}})}},
			one(resolver.Check{Kind: resolver.CheckGRPC, Port: 9000, TimeoutSeconds: 1, Service: "health"})},
		{"startup then readiness, and a sidecar's", corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "init", ReadinessProbe: httpProbe(nil)}, // runs to completion: not part of readiness
				{Name: "proxy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 15021}}, ReadinessProbe: httpProbe(nil)},
			},
			Containers: []corev1.Container{func() corev1.Container {
				c := container(httpProbe(nil))
				c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("grpc")}}}
				return c
			}()},
		}, resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{
			{Kind: resolver.CheckHTTP, Port: 15021, TimeoutSeconds: 2, Path: "/ready"},
			{Kind: resolver.CheckTCP, Port: 9000, TimeoutSeconds: 1},
			{Kind: resolver.CheckHTTP, Port: 8888, TimeoutSeconds: 2, Path: "/ready"},
		}}},
		{"exec", corev1.PodSpec{Containers: []corev1.Container{container(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}})}}, opaque},
		{"another host", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) { g.Host = "169.254.169.254" }))}}, opaque},
		{"tcp to another host", corev1.PodSpec{Containers: []corev1.Container{container(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80), Host: "10.0.0.1"}}})}}, opaque},
		{"unknown port name", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) { g.Port = intstr.FromString("admin") }))}}, opaque},
		{"port out of range", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) { g.Port = intstr.FromInt32(70000) }))}}, opaque},
		{"unknown scheme", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) { g.Scheme = "gopher" }))}}, opaque},
		{"a host in the path", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) { g.Path = "//evil.example/x" }))}}, opaque},
		{"a header that splits", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(func(g *corev1.HTTPGetAction) {
			g.HTTPHeaders = []corev1.HTTPHeader{{Name: "X", Value: "a\r\nHost: evil"}}
		}))}}, opaque},
		{"too many probes", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(nil)), container(httpProbe(nil)), container(httpProbe(nil)), container(httpProbe(nil)), container(httpProbe(nil))}}, opaque},
		{"exec after a good one", corev1.PodSpec{Containers: []corev1.Container{container(httpProbe(nil)),
			container(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}})}}, opaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readReadiness(&tt.spec); got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// FuzzProbeHTTP feeds arbitrary paths and headers through the probe
// reader: whatever a pod spec holds, the router either refuses the probe
// or gets a path that stays on the pod (no scheme, host or user) and
// header lines that cannot add a line of their own.
func FuzzProbeHTTP(f *testing.F) {
	f.Add("/ready", "X-Probe", "1")
	f.Add("//evil/x", "Host", "a\nb")
	f.Add("http://169.254.169.254/", "", "")
	f.Add("a b", "Bad Name", "v")
	f.Fuzz(func(t *testing.T, path, name, value string) {
		c := container(httpProbe(func(g *corev1.HTTPGetAction) {
			g.Path = path
			if name != "" {
				g.HTTPHeaders = []corev1.HTTPHeader{{Name: name, Value: value}}
			}
		}))
		check, ok := readProbe(&c, c.ReadinessProbe)
		if !ok {
			return
		}
		if !strings.HasPrefix(check.Path, "/") || len(check.Path) > maxProbePath+1 {
			t.Fatalf("path %q", check.Path)
		}
		u, err := url.Parse("http://10.0.0.1:8888" + check.Path)
		if err != nil || u.Host != "10.0.0.1:8888" || u.User != nil {
			t.Fatalf("path %q makes %v (%v)", check.Path, u, err)
		}
		lines := strings.Split(strings.TrimSuffix(check.Header, "\n"), "\n")
		if check.Header != "" && (len(lines) != 1 || strings.ContainsRune(check.Header, '\r')) {
			t.Fatalf("header %q", check.Header)
		}
	})
}
