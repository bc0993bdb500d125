package httpapi

import (
	"net/http"
	"net/http/pprof"

	"github.com/sessionbus/sessionbus/events"
)

// Admin returns the admin API, for its own listener only. Every request,
// /metrics, /healthz and /readyz included, must carry an admin
// credential (Config.AdminCredentials) as its bearer token, name this
// listener in its Host header and carry no Origin (see the package doc).
func (h *Handlers) Admin() http.Handler {
	mux := http.NewServeMux()
	h.handle(mux, "POST /admin/revoke", h.adminRevoke)
	h.handle(mux, "GET /admin/sessions", h.adminSessions)
	h.handle(mux, "GET /admin/users", h.adminUsers)
	h.handle(mux, "POST /admin/users", h.adminAddUser)
	h.handle(mux, "POST /admin/users/{user}/disable", h.adminDisable(true))
	h.handle(mux, "POST /admin/users/{user}/enable", h.adminDisable(false))
	h.handle(mux, "PUT /admin/users/{user}/password", h.adminPassword)
	h.handle(mux, "GET /admin/keys", h.adminKeys)
	h.handle(mux, "POST /admin/keys/rotate", h.adminRotate)
	h.handle(mux, "POST /admin/keys/{kid}/revoke", h.adminRevokeKey)
	if h.cfg.Metrics != nil {
		mux.Handle("GET /metrics", h.cfg.Metrics)
	}
	if h.cfg.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	h.common(mux)
	return h.adminGuard(jsonFallback(mux))
}

func (h *Handlers) adminRevoke(w http.ResponseWriter, r *http.Request) error {
	var req events.RevokeRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := h.m.Revoke(r.Context(), req); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (h *Handlers) adminSessions(w http.ResponseWriter, r *http.Request) error {
	ss, err := h.m.Sessions(r.Context(), r.URL.Query().Get("user_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, events.SessionsReply{Sessions: ss})
	return nil
}

func (h *Handlers) adminUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := h.m.ListUsers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": us})
	return nil
}

func (h *Handlers) adminAddUser(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	u, err := h.m.AddUser(r.Context(), req.Username, req.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (h *Handlers) adminDisable(disabled bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		u, err := h.m.SetDisabled(r.Context(), r.PathValue("user"), disabled)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, u)
		return nil
	}
}

func (h *Handlers) adminPassword(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Password string `json:"password"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := h.m.SetPassword(r.Context(), r.PathValue("user"), req.Password); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handlers) adminKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := h.m.ListKeys(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": ks})
	return nil
}

func (h *Handlers) adminRotate(w http.ResponseWriter, r *http.Request) error {
	var req events.KeyRequest
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			return err
		}
	}
	k, err := h.m.RotateKey(r.Context(), req.Alg)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

func (h *Handlers) adminRevokeKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			return err
		}
	}
	if err := h.m.RevokeKey(r.Context(), r.PathValue("kid"), req.Reason); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}
