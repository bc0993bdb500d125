package cli

import (
	"fmt"
	"net/http"
)

// Probes adds GET /healthz (alive), GET /readyz (200 once ready reports
// true, 503 before) and GET /metrics to mux: the operations endpoints of
// a program built on consumers/.
func Probes(mux *http.ServeMux, ready func() bool, metrics http.Handler) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"catching up"}`)
			return
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	mux.Handle("GET /metrics", metrics)
}
