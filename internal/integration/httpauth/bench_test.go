package httpauth_test

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

// discard is a ResponseWriter that keeps nothing, so that the benchmarks
// measure the middleware and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func benchSetup(b *testing.B, cacheSize int) (*fixture, http.Handler) {
	b.Helper()
	f := setupB(b, cacheSize)
	h := f.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	return f, h
}

// BenchmarkMiddleware is the cost per request of the middleware with a
// no-op handler: for a token seen before (cached) and for one that must be
// verified (cache disabled: every request verifies the signature), beside
// BenchmarkVerifyES256.
func BenchmarkMiddleware(b *testing.B) {
	for _, tc := range []struct {
		name   string
		cache  int
		signer func(f *fixture) *signer
	}{
		{"cached-ES256", 0, func(f *fixture) *signer { return f.es }},
		{"fresh-ES256", -1, func(f *fixture) *signer { return f.es }},
		{"fresh-EdDSA", -1, func(f *fixture) *signer { return f.ed }},
		{"fresh-RS256", -1, func(f *fixture) *signer { return f.rs }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f, h := benchSetup(b, tc.cache)
			tok := tc.signer(f).sign(b, claims(time.Now()), nil)
			r, err := http.NewRequest(http.MethodGet, "/protected-resource", nil)
			if err != nil {
				b.Fatal(err)
			}
			r.Header.Set("Authorization", "Bearer "+tok)
			w := &discard{h: http.Header{}}
			h.ServeHTTP(w, r) // fetch the keys, fill the cache
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
	b.Run("cached-ES256-parallel", func(b *testing.B) {
		f, h := benchSetup(b, 0)
		toks := make([]string, 64)
		for i := range toks {
			toks[i] = f.es.sign(b, claims(time.Now()), nil)
			if _, err := f.auth.Authenticate(context.Background(), toks[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := &discard{h: http.Header{}}
			rs := make([]*http.Request, len(toks))
			for i := range rs {
				rs[i], _ = http.NewRequest(http.MethodGet, "/", nil)
				rs[i].Header.Set("Authorization", "Bearer "+toks[i])
			}
			i := 0
			for pb.Next() {
				h.ServeHTTP(w, rs[i%len(rs)])
				i++
			}
		})
	})
}

// BenchmarkMiddlewareTraced is the cached-token case with tracing on: a
// real SDK provider sampling every request, exporting nowhere, beside
// BenchmarkMiddleware/cached-ES256 (tracing off: no span at all).
func BenchmarkMiddlewareTraced(b *testing.B) {
	f := setupB(b, 0)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	auth, err := httpauth.New(httpauth.Config{Keys: f.keys, DenyList: f.dl, Issuer: testIssuer, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	h := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	r, err := http.NewRequest(http.MethodGet, "/protected-resource", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+f.es.sign(b, claims(time.Now()), nil))
	r.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, r)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkAuthenticate is Authenticate alone for a cached token: keyed hash,
// cache lookup, deny-list check (no HTTP request copy).
func BenchmarkAuthenticate(b *testing.B) {
	f, _ := benchSetup(b, 0)
	tok := f.es.sign(b, claims(time.Now()), nil)
	ctx := context.Background()
	if _, err := f.auth.Authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.auth.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyES256 is one bare ES256 signature verification, the
// floor of an uncached request.
func BenchmarkVerifyES256(b *testing.B) {
	s := newSigner(b, "k", "ES256")
	tok := s.sign(b, claims(time.Now()), nil)
	i := strings.LastIndexByte(tok, '.')
	sig, err := jwt.NewParser().DecodeSegment(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := s.priv.Public()
	b.ReportAllocs()
	for b.Loop() {
		if err := jwt.SigningMethodES256.Verify(tok[:i], sig, pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheMemory reports the heap held per cached token (claims
// included), from 20,000 distinct EdDSA tokens.
func BenchmarkCacheMemory(b *testing.B) {
	const n = 20_000
	f, _ := benchSetup(b, 2*n)
	toks := make([]string, n)
	for i := range toks {
		toks[i] = f.ed.sign(b, claims(time.Now()), nil)
	}
	ctx := context.Background()
	if _, err := f.auth.Authenticate(ctx, toks[0]); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, tok := range toks[1:] {
			if _, err := f.auth.Authenticate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n-1), "B/cached-token")
	}
}

// setupB is setup for benchmarks (setup takes a *testing.T).
func setupB(b *testing.B, cacheSize int) *fixture {
	b.Helper()
	srv := natstestStart(b)
	f := &fixture{srv: srv}
	f.es, f.ed, f.rs = newSigner(b, "kid-es", "ES256"), newSigner(b, "kid-ed", "EdDSA"), newSigner(b, "kid-rs", "RS256")
	f.mgr = newManager(b, srv, f.es, f.ed, f.rs)
	f.dl = startDenyList(b, srv, denylistConfig())
	var err error
	f.keys, err = httpauth.NewKeySet(httpauth.KeySetConfig{Source: httpauth.NATSSource(srv.ConnectService(), "")})
	if err != nil {
		b.Fatal(err)
	}
	f.auth, err = httpauth.New(httpauth.Config{Keys: f.keys, DenyList: f.dl, Issuer: testIssuer, CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	return f
}
