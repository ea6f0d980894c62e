package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// sseInterval is the time between two events of /sse.
const sseInterval = 50 * time.Millisecond

// usedAddrs are the loopback addresses handed out in this process, by any
// Sim: an address is never given to a second pod, so a stale route can
// never reach another pod's backend.
var usedAddrs = struct {
	sync.Mutex
	m map[netip.Addr]bool
}{m: map[netip.Addr]bool{}}

func reserveAddr(a netip.Addr) bool {
	usedAddrs.Lock()
	defer usedAddrs.Unlock()
	if usedAddrs.m[a] {
		return false
	}
	usedAddrs.m[a] = true
	return true
}

// errStopped is what listen and initialise return once the backend is
// stopped.
var errStopped = errors.New("backend stopped")

// backend is the HTTP server of one pod: one listener per port on the
// pod's address. It is made bound (the address is the pod's, connections
// are refused) and serves from listen on; its readiness path answers 503
// until it is initialised.
type backend struct {
	namespace, pod   string
	ip               netip.Addr
	ports, grpcPorts []uint16
	sandbox          atomic.Pointer[string] // changes when a warm pod is adopted
	logf             func(string, ...any)
	stats            *podCounters // outlives the backend (Sim.PodStats)
	// Set before the backend is shared: when it is initialised after
	// listening (manualInit wins: only initialise does it), and whom to
	// tell when it starts listening or is initialised.
	initDelay  time.Duration
	manualInit bool
	onChange   func()

	ctx     context.Context // canceled by stop; every request's base
	cancel  context.CancelFunc
	servers []*http.Server
	grpc    []*grpc.Server
	serveWG sync.WaitGroup // Serve goroutines

	// initialised: the readiness path answers 200 (read by every request).
	initialised atomic.Bool

	mu            sync.Mutex
	stopping      bool
	sockets       []*portSocket // bound, until listen
	listening     bool
	listenErr     error // listen failed; the backend never serves
	listeningAt   time.Time
	initWanted    bool // initialise was called (before listening, it takes effect then)
	initialisedAt time.Time
	timers        []*time.Timer  // scheduled listen and initialise
	active        sync.WaitGroup // running handlers, hijacked ones included
	stopOnce      sync.Once

	fs sandboxFS // the runtime API's files (runtime.go)
}

// newBackend makes a backend that holds no address yet.
func newBackend(ip netip.Addr, ports, grpcPorts []uint16, namespace, pod, sandbox string, logf func(string, ...any)) *backend {
	b := &backend{namespace: namespace, pod: pod, ip: ip, ports: ports, grpcPorts: grpcPorts, logf: logf, stats: &podCounters{}}
	b.sandbox.Store(&sandbox)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// bindBackend makes a backend bound to every port on ip, not listening.
// It fails (with an error wrapping syscall.EADDRINUSE when another socket
// holds a port) without leaving a socket open.
func bindBackend(ip netip.Addr, ports, grpcPorts []uint16, namespace, pod, sandbox string, logf func(string, ...any)) (*backend, error) {
	b := newBackend(ip, ports, grpcPorts, namespace, pod, sandbox, logf)
	for _, port := range ports {
		s, err := bindPort(netip.AddrPortFrom(ip, port))
		if err != nil {
			for _, s := range b.sockets {
				s.close()
			}
			b.cancel()
			return nil, err
		}
		b.sockets = append(b.sockets, s)
	}
	return b, nil
}

// listen makes every bound port listen and serve, and records when. Once
// listening, or once stopped, it does nothing more.
func (b *backend) listen() error {
	b.mu.Lock()
	switch {
	case b.stopping:
		b.mu.Unlock()
		return errStopped
	case b.listenErr != nil:
		b.mu.Unlock()
		return b.listenErr
	case b.listening:
		b.mu.Unlock()
		return nil
	}
	ls := make([]net.Listener, 0, len(b.sockets))
	for _, s := range b.sockets {
		l, err := s.listen()
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			for _, s := range b.sockets {
				s.close()
			}
			b.sockets, b.listenErr = nil, fmt.Errorf("backend of pod %s/%s: %w", b.namespace, b.pod, err)
			b.mu.Unlock()
			return b.listenErr
		}
		ls = append(ls, l)
	}
	b.sockets = nil
	b.listening, b.listeningAt = true, time.Now()
	// Initialised before the first request can be accepted, so an app
	// without an init time never answers 503.
	switch {
	case b.initWanted || (!b.manualInit && b.initDelay == 0):
		b.initialised.Store(true)
		b.initialisedAt = b.listeningAt
	case !b.manualInit:
		b.timers = append(b.timers, time.AfterFunc(b.initDelay, func() { _ = b.initialise() }))
	}
	b.serve(ls)
	b.mu.Unlock()
	b.changed()
	return nil
}

// serve starts a server on each listener (the caller holds b.mu).
func (b *backend) serve(ls []net.Listener) {
	// HTTP/1.1 and h2c with prior knowledge on every port, as a gRPC
	// server in a sandbox speaks.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	for i, l := range ls {
		port := b.ports[i]
		if slices.Contains(b.grpcPorts, port) {
			g := grpc.NewServer()
			healthpb.RegisterHealthServer(g, health.NewServer())
			b.grpc = append(b.grpc, g)
			b.serveWG.Go(func() {
				if err := g.Serve(l); err != nil {
					b.logf("sim: backend %s %s: %v", b.pod, l.Addr(), err)
				}
			})
			continue
		}
		srv := &http.Server{
			Handler:           b.handler(port),
			ReadHeaderTimeout: 30 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return b.ctx },
			ErrorLog:          nil,
			Protocols:         &protocols,
		}
		b.servers = append(b.servers, srv)
		b.serveWG.Go(func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.logf("sim: backend %s %s: %v", b.pod, l.Addr(), err)
			}
		})
	}
}

// listenAfter makes the backend listen after d, unless it is stopped
// first.
func (b *backend) listenAfter(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping || b.listening {
		return
	}
	b.timers = append(b.timers, time.AfterFunc(d, func() {
		if err := b.listen(); err != nil && !errors.Is(err, errStopped) {
			b.logf("sim: %v", err)
		}
	}))
}

// initialise makes the readiness path answer 200: now when the backend
// listens, else from when it listens. Once done it does nothing more.
func (b *backend) initialise() error {
	b.mu.Lock()
	switch {
	case b.stopping:
		b.mu.Unlock()
		return errStopped
	case b.initWanted || b.initialised.Load():
		b.mu.Unlock()
		return nil
	}
	b.initWanted = true
	if b.listening {
		b.initialisedAt = time.Now()
		b.initialised.Store(true)
	}
	b.mu.Unlock()
	b.changed()
	return nil
}

// times reports when the backend started listening and when its readiness
// path began answering 200 (zero: not yet).
func (b *backend) times() (listeningAt, initialisedAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.listeningAt, b.initialisedAt
}

func (b *backend) changed() {
	if b.onChange != nil {
		b.onChange()
	}
}

func (b *backend) setSandbox(name string) { b.sandbox.Store(&name) }

// stop releases the address: it cancels what is scheduled, closes the
// listeners and every connection, ends streams and WebSockets, and waits
// for the handlers. Connections to the address are refused afterwards.
func (b *backend) stop() {
	b.stopOnce.Do(func() {
		b.mu.Lock()
		b.stopping = true
		for _, t := range b.timers {
			t.Stop()
		}
		for _, s := range b.sockets {
			s.close()
		}
		b.sockets = nil
		servers, grpcs := b.servers, b.grpc
		b.mu.Unlock()
		b.cancel()
		for _, srv := range servers {
			srv.Close()
		}
		for _, g := range grpcs {
			g.Stop()
		}
		b.serveWG.Wait()
		b.active.Wait()
	})
}

// track registers a running handler; false once the backend is stopping.
func (b *backend) track() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping {
		return false
	}
	b.active.Add(1)
	return true
}

// info is the JSON answer of every plain request.
type info struct {
	Sandbox   string `json:"sandbox"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	IP        string `json:"ip"`
	Port      uint16 `json:"port"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Host      string `json:"host"`
}

func (b *backend) handler(port uint16) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ReadinessPath {
			b.stats.probe(r.UserAgent())
		} else {
			b.stats.request(!b.initialised.Load())
		}
		if !b.track() {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		defer b.active.Done()
		w.Header().Set("X-Served-By", b.pod)
		switch {
		case r.URL.Path == ReadinessPath:
			b.serveReadiness(w)
		case r.URL.Path == "/ws":
			b.serveWebSocket(w, r)
		case r.URL.Path == "/page": // a browser's page (page.go)
			b.servePage(w, r)
		case r.URL.Path == "/sse":
			serveSSE(w, r)
		case r.URL.Path == "/echo" && r.Method == http.MethodPost:
			serveEcho(w, r)
		case isRuntimePath(r.URL.Path): // the sandbox runtime API the SDKs call
			b.serveRuntime(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(info{
				Sandbox:   *b.sandbox.Load(),
				Namespace: b.namespace,
				Pod:       b.pod,
				IP:        b.ip.String(),
				Port:      port,
				Method:    r.Method,
				Path:      r.URL.Path,
				Host:      r.Host,
			})
		}
	})
}

// serveReadiness answers the readiness probe: 503 while the app
// initialises, then 200.
func (b *backend) serveReadiness(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !b.initialised.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "initialising\n")
		return
	}
	io.WriteString(w, "ready\n")
}

// serveWebSocket echoes every message until the client or the backend
// goes away.
func (b *backend) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := r.Context() // canceled when the backend stops
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// serveSSE sends "data: <n>" every sseInterval until the client or the
// backend goes away.
func serveSSE(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	t := time.NewTicker(sseInterval)
	defer t.Stop()
	for n := 0; ; n++ {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", n); err != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// serveEcho streams the request body back as the response body, flushing
// as it goes. For gRPC (Content-Type application/grpc...) that makes a
// bidirectional echo stream: the length-prefixed messages come back as
// they are, and the response ends with the trailer grpc-status 0 (OK)
// once the client closes its side.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/2 is full duplex anyway
	ct := r.Header.Get("Content-Type")
	grpc := strings.HasPrefix(ct, "application/grpc")
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if grpc {
		w.Header().Set("Trailer", "Grpc-Status")
	}
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil || rc.Flush() != nil {
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return // the client went away: no status
		}
	}
	if grpc {
		w.Header().Set("Grpc-Status", "0")
	}
}

// isAddrInUse reports whether a listen failed because another socket
// holds the address.
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE)
}
