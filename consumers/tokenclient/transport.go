package tokenclient

import (
	"io"
	"net/http"
)

// Transport is an http.RoundTripper that sends requests with the Client's
// access token ("Authorization: Bearer …"). On a 401 it invalidates the
// token (Client.Invalidate), gets a new one and retries once — only when the request's body
// can be sent again (no body, or GetBody set, as http.NewRequest does for
// bytes, strings and their readers). Otherwise, or when no new token can
// be had, the 401 is returned as it is.
type Transport struct {
	// Client provides the tokens. Required.
	Client *Client
	// Base sends the requests (nil: http.DefaultTransport).
	Base http.RoundTripper
}

// Transport returns a Transport over base (nil: http.DefaultTransport).
func (c *Client) Transport(base http.RoundTripper) *Transport {
	return &Transport{Client: c, Base: base}
}

// HTTPClient returns an *http.Client whose requests carry the Client's
// tokens, over base (nil: http.DefaultTransport).
func (c *Client) HTTPClient(base http.RoundTripper) *http.Client {
	return &http.Client{Transport: c.Transport(base)}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	token, err := t.Client.Token(ctx)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	first := req.Clone(ctx)
	first.Header.Set("Authorization", "Bearer "+token)
	resp, err := t.base().RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// Refused: the next request gets a new token even if this one cannot
	// be retried.
	t.Client.Invalidate(token)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	fresh, err := t.Client.Token(ctx)
	if err != nil || fresh == token {
		return resp, nil
	}
	retry := req.Clone(ctx)
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		retry.Body = body
	}
	retry.Header.Set("Authorization", "Bearer "+fresh)
	// The first answer is dropped: drain a little of it so that its
	// connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
	return t.base().RoundTrip(retry)
}
