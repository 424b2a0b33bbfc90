package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one vault's API with one API key.
type Client struct {
	baseURL, apiKey string
	http            *http.Client
	transport       *http.Transport
}

// NewClient returns a client of the vault at baseURL that keeps up to
// conns idle connections and gives each request timeout. apiKey "" sends
// no X-API-Key.
func NewClient(baseURL, apiKey string, conns int, timeout time.Duration) *Client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns,
		IdleConnTimeout: time.Minute, DisableCompression: true}
	return &Client{baseURL: baseURL, apiKey: apiKey, transport: tr, http: &http.Client{Transport: tr, Timeout: timeout}}
}

// Close closes the idle connections.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Answer is the vault's answer to one request.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte // at most 1 MiB
}

// OK reports whether the status is 2xx.
func (a Answer) OK() bool { return a.Status >= 200 && a.Status < 300 }

// APIError returns the type and code of an error answer, "" for others.
func (a Answer) APIError() (typ, code string) {
	var e struct {
		Error struct {
			Type string `json:"type"`
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.Body, &e)
	return e.Error.Type, e.Error.Code
}

// Send sends one request, a JSON body unless body is nil, and returns the
// answer, or an error when none came.
func (c *Client) Send(ctx context.Context, method, path string, body []byte) (Answer, error) {
	return c.send(ctx, method, path, body, nil)
}

// send is Send with extra request headers.
func (c *Client) send(ctx context.Context, method, path string, body []byte, header http.Header) (Answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return Answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Answer{}, err
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: out}, nil
}

// Call sends one request and returns the body of an answer with status
// want, or an error naming the route (ids hidden) and the status.
func (c *Client) Call(ctx context.Context, method, path string, body []byte, want int) ([]byte, error) {
	a, err := c.Send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if a.Status != want {
		return nil, statusError(method, path, a.Status, a.Body)
	}
	return a.Body, nil
}

// routeWords are the path segments of the routes the harness calls that
// are not ids.
var routeWords = map[string]bool{"tokens": true, "detokenize": true, "imports": true, "items": true,
	"cde-import": true, "healthz": true, "readyz": true, "v1": true, "forwarding": true, "requests": true,
	"destinations": true}

// Route returns path without its query and with its ids replaced by {id},
// for error messages.
func Route(path string) string {
	path, _, _ = strings.Cut(path, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s != "" && !routeWords[s] {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// TokenID returns the id of a token record, or an error when body is not one.
func TokenID(body []byte) (string, error) {
	var tok struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.ID == "" {
		return "", errors.New("an answer without a token id")
	}
	return tok.ID, nil
}
