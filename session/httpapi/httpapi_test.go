package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

func TestProbe(t *testing.T) {
	start := time.Now()
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv, func(c *node.Config) { c.HTTPAddr = "127.0.0.1:0"; c.AdminAddr = "127.0.0.1:0" })
	t.Logf("start %v", time.Since(start))
	for _, r := range []struct{ method, path, ct, body string }{
		{"GET", "/login", "", ""},
		{"PUT", "/login", "application/json", "{}"},
		{"GET", "/admin/revoke", "", ""},
		{"POST", "/admin/revoke", "application/json", "{}"},
		{"GET", "/nope", "", ""},
	} {
		req, _ := http.NewRequest(r.method, "http://"+m.HTTPAddr()+r.path, strings.NewReader(r.body))
		if r.ct != "" {
			req.Header.Set("Content-Type", r.ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s %s -> %d %v %s", r.method, r.path, resp.StatusCode, resp.Header, b)
	}
	start = time.Now()
	m.AddUser(t, "alice", "password123")
	t.Logf("adduser %v", time.Since(start))
	err := events.Request(context.Background(), m.NC, events.SubjectRevoke, "/t", events.RevokeRequest{UserID: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, nil)
	t.Logf("revoke unknown user: %v", err)
	err = events.Request(context.Background(), m.NC, events.SubjectRefresh, "/t", map[string]any{}, nil)
	t.Logf("refresh empty: %v", err)
}
