package httpapi

import (
	"fmt"
	"net/http"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

// Public returns the public API.
func (h *Handlers) Public() http.Handler {
	mux := http.NewServeMux()
	h.handle(mux, "POST /login", h.login)
	h.handle(mux, "POST /refresh", h.refresh)
	h.handle(mux, "POST /logout", h.logout)
	h.handle(mux, "POST /revoke", h.revokeToken)
	h.handle(mux, "POST /introspect", h.introspect)
	h.common(mux)
	return jsonFallback(mux)
}

// tokenReply is the HTTP shape of a token reply (contract).
type tokenReply struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	TokenType    string `json:"tokenType"`
	ExpiresIn    int    `json:"expiresIn"`
	SessionID    string `json:"sessionId"`
}

func fromReply(r events.TokenReply) tokenReply {
	return tokenReply{r.AccessToken, r.RefreshToken, r.TokenType, r.ExpiresIn, r.SessionID}
}

func (h *Handlers) login(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		ClientID string `json:"clientId,omitempty"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	ua := r.UserAgent()
	if len(ua) > 512 {
		ua = ua[:512]
	}
	rep, err := h.m.Login(r.Context(), events.LoginRequest{
		Username: req.Username, Password: req.Password, ClientID: req.ClientID,
		IP: h.clientIP(r), UserAgent: ua,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fromReply(rep))
	return nil
}

type tokenBody struct {
	Token string `json:"token"`
}

func (h *Handlers) refresh(w http.ResponseWriter, r *http.Request) error {
	var req tokenBody
	if err := readJSON(r, &req); err != nil {
		return err
	}
	rep, err := h.m.Refresh(r.Context(), req.Token)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fromReply(rep))
	return nil
}

func (h *Handlers) logout(w http.ResponseWriter, r *http.Request) error {
	var req tokenBody
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return fmt.Errorf("%w: token is required", session.ErrInvalidInput)
	}
	lr := events.LogoutRequest{AccessToken: req.Token}
	if session.IsRefreshToken(req.Token) {
		lr = events.LogoutRequest{RefreshToken: req.Token}
	}
	if err := h.m.Logout(r.Context(), lr); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revokeToken is RFC 7009: 200 for any token, valid or not.
func (h *Handlers) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(r); err != nil {
		return err
	}
	token := r.PostForm.Get("token")
	if token == "" {
		return fmt.Errorf("%w: token is required", session.ErrInvalidInput)
	}
	if err := h.m.RevokeToken(r.Context(), token, r.PostForm.Get("token_type_hint")); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// introspect is RFC 7662. The caller must authenticate (§2.1) with one
// of Config.IntrospectTokens as its bearer token; without it nothing of
// the request, the token included, is read.
func (h *Handlers) introspect(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.introspectors.check(r); err != nil {
		return err
	}
	if err := readForm(r); err != nil {
		return err
	}
	token := r.PostForm.Get("token")
	if token == "" {
		return fmt.Errorf("%w: token is required", session.ErrInvalidInput)
	}
	res, err := h.m.Introspect(r.Context(), token)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
