package xds

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslog "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// activityLog records the sandboxes a server was told were in use.
type activityLog struct {
	mu   sync.Mutex
	seen map[resolver.Key]int
}

func (l *activityLog) record(k resolver.Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[resolver.Key]int{}
	}
	l.seen[k]++
}

func (l *activityLog) count(ns, name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[resolver.Key{Namespace: ns, Name: name}]
}

// TestEnvoyAccessLogActivity: Envoy's access log entries mark the
// sandboxes whose hosts they name; a stream without a node is refused.
func TestEnvoyAccessLogActivity(t *testing.T) {
	var act activityLog
	_, addr := startServer(t, Options{Resolver: newFakeResolver(), Activity: act.record})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	entry := func(authority string) *accesslogdata.HTTPAccessLogEntry {
		return &accesslogdata.HTTPAccessLogEntry{Request: &accesslogdata.HTTPRequestProperties{Authority: authority}}
	}
	send := func(node *core.Node, hosts ...string) error {
		st, err := accesslog.NewAccessLogServiceClient(conn).StreamAccessLogs(context.Background())
		if err != nil {
			return err
		}
		var entries []*accesslogdata.HTTPAccessLogEntry
		for _, h := range hosts {
			entries = append(entries, entry(h))
		}
		if err := st.Send(&accesslog.StreamAccessLogsMessage{
			Identifier: &accesslog.StreamAccessLogsMessage_Identifier{Node: node, LogName: "sandbox-activity"},
			LogEntries: &accesslog.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslog.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
		}); err != nil {
			return err
		}
		_, err = st.CloseAndRecv()
		return err
	}
	if err := send(envoyNode("envoy-1"), "a.ns.example.com", "3000-a.ns.example.com:443", "b.ns.example.com", "router.example.org"); err != nil {
		t.Fatal(err)
	}
	if a, b := act.count("ns", "a"), act.count("ns", "b"); a == 0 || b != 1 {
		t.Fatalf("activity a=%d b=%d, want a>0 b=1", a, b)
	}
	if err := send(&core.Node{UserAgentName: "envoy"}, "c.ns.example.com"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no node: %v, want InvalidArgument", err)
	}
	if act.count("ns", "c") != 0 {
		t.Fatal("a refused stream marked a sandbox")
	}
}

// TestProxylessLoadReportActivity: grpc-go's xDS client reports the load
// of the sandbox's cluster to the server, which marks the sandbox busy.
func TestProxylessLoadReportActivity(t *testing.T) {
	_, podAddr := healthServer(t, "127.0.0.1:0")
	port := netip.MustParseAddrPort(podAddr).Port()
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "127.0.0.1")
	var act activityLog
	_, addr := startServer(t, Options{Resolver: r, AllowLoopbackPodIP: true, Activity: act.record, ActivityInterval: time.Second})
	conn := xdsConn(t, addr, fmt.Sprintf("%d-a.ns.example.com", port))
	if got := check(t, conn); got != podAddr {
		t.Fatalf("answered by %s, want the pod %s", got, podAddr)
	}
	waitFor(t, func() bool { return act.count("ns", "a") > 0 })
}
