// Command refproxy is the benchmark's reference Go proxy: a plain
// httputil.ReverseProxy to one origin with a Transport whose only tuning
// is a large idle pool (no BufferPool, nothing else clever).
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "listen address")
	target := flag.String("target", "", "origin URL, e.g. http://127.0.0.1:8081")
	portFile := flag.String("port-file", "", "write the bound address here once listening")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		log.Fatalf("--target: %q is not a URL", *target)
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1000
	tr.MaxIdleConnsPerHost = 1000
	tr.IdleConnTimeout = 90 * time.Second
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("refproxy listening on %s -> %s", ln.Addr(), u)
	log.Fatal((&http.Server{Handler: rp}).Serve(ln))
}
