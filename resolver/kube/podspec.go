package kube

import (
	"net/url"
	"strings"
	"unique"

	"golang.org/x/net/http/httpguts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// podSpec is what the router reads of a pod's spec. Pods of one template
// have equal ones, so records hold it interned (unique.Handle, one
// pointer): the readiness probes of 100,000 pods cost the memory of one.
type podSpec struct {
	// h2cPorts are the declared container ports named as HTTP/2 (grpc*,
	// h2c*, http2*), at most resolver.MaxPortHints.
	h2cPorts [resolver.MaxPortHints]uint16
	// readiness is interned on its own: every lookup of a running
	// sandbox copies the podSpec for its h2cPorts, and that copy must
	// stay small (16 bytes, not the 230 of a Readiness).
	readiness unique.Handle[resolver.Readiness]
}

// facts returns the record's podSpec; a record built without one (in
// tests) has the zero value.
func (p *podRecord) facts() podSpec {
	if p.spec == (unique.Handle[podSpec]{}) {
		return podSpec{}
	}
	return p.spec.Value()
}

// readinessOf returns the pod's readiness; zero for a podSpec without one.
func (ps *podSpec) readinessOf() resolver.Readiness {
	if ps.readiness == (unique.Handle[resolver.Readiness]{}) {
		return resolver.Readiness{}
	}
	return ps.readiness.Value()
}

// Bounds of what a probe may carry before the pod counts as opaque: a pod
// spec is written by whoever may create pods, and the router runs its
// probes.
const (
	maxProbePath    = 1024
	maxProbeHeaders = 8
	maxProbeHeader  = 1024 // all names and values together
)

func readPodSpec(spec *corev1.PodSpec) podSpec {
	var ps podSpec
	n := 0
	for i := range spec.Containers {
		for _, cp := range spec.Containers[i].Ports {
			if n < len(ps.h2cPorts) && isH2CPortName(cp.Name) && cp.ContainerPort > 0 && cp.ContainerPort < 1<<16 {
				ps.h2cPorts[n] = uint16(cp.ContainerPort)
				n++
			}
		}
	}
	ps.readiness = unique.Make(readReadiness(spec))
	return ps
}

// readReadiness collects the startup and readiness probes of the pod's
// containers and of its sidecars (init containers that keep running):
// the kubelet calls the pod Ready only once all of them pass.
func readReadiness(spec *corev1.PodSpec) resolver.Readiness {
	var r resolver.Readiness
	n := 0
	add := func(c *corev1.Container, p *corev1.Probe) {
		if p == nil || r.Opaque {
			return
		}
		check, ok := readProbe(c, p)
		switch {
		case !ok || n == len(r.Checks):
			r = resolver.Readiness{Opaque: true}
		case check.Kind != resolver.CheckNone:
			r.Checks[n] = check
			n++
		}
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c, c.StartupProbe)
			add(c, c.ReadinessProbe)
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		add(c, c.StartupProbe)
		add(c, c.ReadinessProbe)
	}
	return r
}

// readProbe converts one probe. It reports false for a probe the router
// cannot or must not run itself: an exec command, a probe of another host
// (the router dials the pod's address only), a port it cannot resolve, an
// unknown scheme, or a path or headers beyond bounds. A probe without a
// handler is a zero Check.
func readProbe(c *corev1.Container, p *corev1.Probe) (resolver.Check, bool) {
	check := resolver.Check{TimeoutSeconds: uint16(min(max(p.TimeoutSeconds, 1), 1<<16-1))}
	h := &p.ProbeHandler
	var ok bool
	switch {
	case h.Exec != nil:
		return check, false
	case h.HTTPGet != nil:
		g := h.HTTPGet
		if g.Host != "" {
			return check, false
		}
		switch g.Scheme {
		case "", corev1.URISchemeHTTP:
			check.Kind = resolver.CheckHTTP
		case corev1.URISchemeHTTPS:
			check.Kind = resolver.CheckHTTPS
		default:
			return check, false
		}
		if check.Port, ok = probePort(c, g.Port); !ok {
			return check, false
		}
		if check.Path, ok = probePath(g.Path); !ok {
			return check, false
		}
		if check.Header, ok = probeHeader(g.HTTPHeaders); !ok {
			return check, false
		}
	case h.TCPSocket != nil:
		if h.TCPSocket.Host != "" {
			return check, false
		}
		check.Kind = resolver.CheckTCP
		if check.Port, ok = probePort(c, h.TCPSocket.Port); !ok {
			return check, false
		}
	case h.GRPC != nil:
		check.Kind = resolver.CheckGRPC
		if check.Port, ok = probePort(c, intstr.FromInt32(h.GRPC.Port)); !ok {
			return check, false
		}
		if h.GRPC.Service != nil {
			check.Service = *h.GRPC.Service
			if len(check.Service) > maxProbePath {
				return check, false
			}
		}
	}
	return check, true
}

// probePort resolves a probe's port: a number, or the name of one of the
// container's ports, as the kubelet resolves it.
func probePort(c *corev1.Container, port intstr.IntOrString) (uint16, bool) {
	n := int32(0)
	if port.Type == intstr.String {
		for _, cp := range c.Ports {
			if cp.Name == port.StrVal {
				n = cp.ContainerPort
				break
			}
		}
	} else {
		n = port.IntVal
	}
	if n <= 0 || n >= 1<<16 {
		return 0, false
	}
	return uint16(n), true
}

// probePath returns the path (and query) to GET, always starting with '/'
// like the URL the kubelet builds. One that does not parse as a path
// alone (a scheme or host in it), or carries control characters, is
// refused.
func probePath(p string) (string, bool) {
	if p == "" {
		return "/", true
	}
	if len(p) > maxProbePath {
		return "", false
	}
	if p[0] != '/' {
		p = "/" + p
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Fragment != "" {
		return "", false
	}
	return p, true
}

// probeHeader renders a probe's headers as "Name: value\n" lines, each
// name and value valid HTTP.
func probeHeader(hs []corev1.HTTPHeader) (string, bool) {
	if len(hs) > maxProbeHeaders {
		return "", false
	}
	var b strings.Builder
	for _, h := range hs {
		if !httpguts.ValidHeaderFieldName(h.Name) || !httpguts.ValidHeaderFieldValue(h.Value) || strings.ContainsAny(h.Value, "\r\n") {
			return "", false
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteByte('\n')
		if b.Len() > maxProbeHeader {
			return "", false
		}
	}
	return b.String(), true
}
