package xds

import (
	"strconv"
	"strings"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/sandboxhost"
)

// The fixed names of the Envoy view. An Envoy bootstrap refers to none of
// them: it only names this control plane and asks for Listeners over ADS.
const (
	// ListenerName is the Envoy listener for sandbox traffic.
	ListenerName = "sandboxes"
	// RouteConfigName is its RouteConfiguration; every virtual host is
	// named <RouteConfigName>/<host>, as Envoy's VHDS asks for it.
	RouteConfigName = "sandboxes"
	// PodsCluster is the ORIGINAL_DST cluster that reaches any pod whose
	// address the route wrote into DestinationHeader.
	PodsCluster = "sandbox-pods"
	// RouterCluster is the router fleet: anything not running goes there.
	RouterCluster = "sandbox-router"
	// DestinationFilter is the name of the listener's header_mutation
	// filter, under which a running sandbox's route writes
	// DestinationHeader (short: every such virtual host repeats it).
	DestinationFilter = "dst"
	// DestinationHeader carries podIP:port from the route to PodsCluster.
	// The route overwrites it, so a client cannot choose a destination.
	// (Short: it is in every virtual host of a running sandbox.)
	DestinationHeader = "x-sandbox-dst"
)

// maxNameLen bounds a resource name a client may ask for: a host name
// (253) with a port and the route configuration's prefix fit easily.
const maxNameLen = 512

// vhostHost is the host a VHDS resource name asks for: Envoy names the
// virtual host for host H of route configuration R as "R/H".
func vhostHost(name string) (string, bool) {
	host, ok := strings.CutPrefix(name, RouteConfigName+"/")
	return host, ok && host != "" && len(name) <= maxNameLen
}

// target is what a resource name resolves to: a sandbox and the port on
// it, or (ok false) no sandbox, which the router answers for.
type target struct {
	key  resolver.Key
	port uint16
	ok   bool
}

// namer reads sandbox hosts in the router's own grammar.
type namer struct {
	domains     sandboxhost.Domains
	defaultPort uint16
	// allowLoopback admits loopback pod addresses (local tests, demos).
	allowLoopback bool
	// reportLoad has proxyless clients report their load per cluster
	// (sandbox port) to this server: the activity of direct traffic.
	reportLoad bool
}

// hostTarget reads a host (as a client sent it) as a sandbox and port.
func (n *namer) hostTarget(host string) target {
	a, matched, err := n.domains.Parse(host)
	if err != nil || !matched {
		return target{}
	}
	if a.Port == 0 {
		a.Port = n.defaultPort
	}
	return target{key: resolver.Key{Namespace: a.Namespace, Name: a.Name}, port: a.Port, ok: true}
}

// clusterName is the proxyless view's cluster (and its endpoints'
// service name) for one sandbox port: sandbox|<namespace>|<name>|<port>.
// Two hosts naming the same sandbox and port share it.
func clusterName(t target) string {
	return "sandbox|" + t.key.Namespace + "|" + t.key.Name + "|" + strconv.Itoa(int(t.port))
}

// clusterTarget is the inverse of clusterName.
func clusterTarget(name string) target {
	rest, ok := strings.CutPrefix(name, "sandbox|")
	if !ok {
		return target{}
	}
	parts := strings.Split(rest, "|")
	if len(parts) != 3 || !resolver.IsDNSLabel(parts[0]) || !resolver.IsDNSLabel(parts[1]) {
		return target{}
	}
	port, ok := sandboxhost.ParsePort(parts[2])
	if !ok {
		return target{}
	}
	return target{key: resolver.Key{Namespace: parts[0], Name: parts[1]}, port: port, ok: true}
}
