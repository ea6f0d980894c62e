// Command origin is the benchmark's sandbox stand-in: a small HTTP server
// speaking HTTP/1.1 and h2c (prior knowledge) on one port.
//
//	GET  /64          64-byte body
//	GET  /64k         65536-byte body
//	PUT|POST /sink    reads and discards the request body, answers its length
//	GET  /bytes?n=N   streams N bytes without holding them in memory
//	GET  /healthz     "ok"
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "listen address")
	portFile := flag.String("port-file", "", "write the bound address here once listening")
	flag.Parse()

	body64 := bytes.Repeat([]byte("a"), 64)
	body64k := bytes.Repeat([]byte("b"), 64<<10)
	fixed := func(body []byte) http.HandlerFunc {
		length := strconv.Itoa(len(body))
		return func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"application/octet-stream"}
			h["Content-Length"] = []string{length}
			w.Write(body)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/64", fixed(body64))
	mux.HandleFunc("/64k", fixed(body64k))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			http.Error(w, "PUT or POST", http.StatusMethodNotAllowed)
			return
		}
		buf := make([]byte, 64<<10)
		n, err := io.CopyBuffer(io.Discard, r.Body, buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n must be a non-negative integer", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := bytes.Repeat([]byte("c"), 64<<10)
		for n > 0 {
			m := int64(len(chunk))
			if n < m {
				m = n
			}
			if _, err := w.Write(chunk[:m]); err != nil {
				return
			}
			n -= m
		}
	})

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("origin listening on %s", ln.Addr())
	log.Fatal(srv.Serve(ln))
}
