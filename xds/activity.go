package xds

import (
	"context"
	"errors"
	"io"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslog "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	loadstats "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Traffic that Envoy or a proxyless client sends straight to a pod never
// passes a router, so without help the idle suspender would see a sandbox
// in use as idle and suspend it. The clients tell the control plane
// instead, over the services they already have:
//
//   - Envoy streams an access log entry per request (gRPC access log
//     service), and one every activity interval for a request still in
//     progress (WebSockets, streams); the authority names the sandbox.
//   - a proxyless gRPC client reports its per-cluster load (load
//     reporting service) every activity interval; a cluster is one
//     sandbox port, so a report with requests issued or in progress marks
//     it busy.
//
// Each report marks the sandbox as the router marks one it proxies.

// activityServer serves both services.
type activityServer struct {
	s *Server
	accesslog.UnimplementedAccessLogServiceServer
	loadstats.UnimplementedLoadReportingServiceServer
}

// StreamAccessLogs reads Envoy's access log entries: each names a sandbox
// host that saw traffic.
func (a *activityServer) StreamAccessLogs(stream accesslog.AccessLogService_StreamAccessLogsServer) error {
	var first *accesslog.StreamAccessLogsMessage
	if err := a.s.checkStream(stream.Context(), func() (*core.Node, error) {
		var err error
		first, err = stream.Recv()
		return first.GetIdentifier().GetNode(), err
	}); err != nil {
		return err
	}
	a.accessLog(first)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslog.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		a.accessLog(msg)
	}
}

func (a *activityServer) accessLog(msg *accesslog.StreamAccessLogsMessage) {
	var last resolver.Key
	for _, e := range msg.GetHttpLogs().GetLogEntry() {
		t := a.s.namer.hostTarget(e.GetRequest().GetAuthority())
		if !t.ok || t.key == last {
			continue
		}
		last = t.key
		a.s.metrics.activity.WithLabelValues("access_log").Inc()
		a.s.opts.Activity(t.key)
	}
}

// StreamLoadStats asks a proxyless client for the load of every cluster
// it uses, every activity interval, and marks the sandboxes with traffic.
func (a *activityServer) StreamLoadStats(stream loadstats.LoadReportingService_StreamLoadStatsServer) error {
	var first *loadstats.LoadStatsRequest
	if err := a.s.checkStream(stream.Context(), func() (*core.Node, error) {
		var err error
		first, err = stream.Recv()
		return first.GetNode(), err
	}); err != nil {
		return err
	}
	if err := stream.Send(&loadstats.LoadStatsResponse{
		SendAllClusters:       true,
		LoadReportingInterval: durationpb.New(a.s.opts.ActivityInterval),
	}); err != nil {
		return err
	}
	a.loadStats(first)
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(stream.Context().Err(), context.Canceled) {
				return nil
			}
			return err
		}
		a.loadStats(req)
	}
}

func (a *activityServer) loadStats(req *loadstats.LoadStatsRequest) {
	for _, cs := range req.GetClusterStats() {
		busy := false
		for _, l := range cs.GetUpstreamLocalityStats() {
			if l.GetTotalIssuedRequests() > 0 || l.GetTotalRequestsInProgress() > 0 ||
				l.GetTotalSuccessfulRequests() > 0 || l.GetTotalErrorRequests() > 0 {
				busy = true
				break
			}
		}
		if !busy {
			continue
		}
		name := cs.GetClusterServiceName()
		if name == "" {
			name = cs.GetClusterName()
		}
		if t := clusterTarget(name); t.ok {
			a.s.metrics.activity.WithLabelValues("load_report").Inc()
			a.s.opts.Activity(t.key)
		}
	}
}

// checkStream checks the node of a stream that is not xDS, as xDS streams
// are checked: first reads the first message and returns its node.
func (s *Server) checkStream(ctx context.Context, first func() (*core.Node, error)) error {
	node, err := first()
	if err != nil {
		return err
	}
	if err := checkNode(node, certNames(ctx)); err != nil {
		s.metrics.refused.WithLabelValues("node_identity").Inc()
		s.log.Warn("activity stream refused", "node", node.GetId(), "cluster", node.GetCluster(), "error", err)
		return err
	}
	return nil
}

// defaultActivityInterval is how often clients report traffic: well under
// any idle timeout worth having, and cheap (one small message per client).
const defaultActivityInterval = 30 * time.Second
