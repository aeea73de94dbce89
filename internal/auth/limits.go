package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"unicode/utf8"
)

// MaxResponse is the most this app reads of any one answer from a
// provider: discovery, keys, tokens, UserInfo, an OAuth provider's API,
// error pages.
// Real ones are a few kilobytes; a provider that sends more (a broken or
// hostile one) is refused after MaxResponse bytes, so its answer cannot
// take the process's memory.
const MaxResponse = 1 << 20

// The longest values kept from a provider, in characters: longer than any
// real provider sends (RFC 5321 for an email, OIDC's sub and sid at most
// 255 ASCII characters). Longer is refused, never cut: a shortened email
// or subject could be someone else's.
const (
	maxName      = 256
	maxEmail     = 320
	maxPicture   = 2048
	maxSubject   = 255
	maxSessionID = 255
)

// ErrTooLarge: the provider's answer, or a value in it, is larger than
// this app accepts. It wraps ErrRejected too.
var ErrTooLarge = fmt.Errorf("%w: the provider's answer is larger than this app accepts", ErrRejected)

// limitedTransport cuts every answer's body at max bytes: reading past
// it is an error, and the request's cutFlag (if any) is raised so the
// caller can say so whatever the libraries between made of the error.
type limitedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if res.ContentLength > t.max {
		res.Body.Close()
		cut(r.Context())
		return nil, fmt.Errorf("%s answered %d bytes: %w", r.URL.Redacted(), res.ContentLength, ErrTooLarge)
	}
	res.Body = &limitedBody{ReadCloser: res.Body, left: t.max, ctx: r.Context()}
	return res, nil
}

// limitedBody reads at most left bytes, then fails if more follow.
type limitedBody struct {
	io.ReadCloser
	left int64
	ctx  context.Context
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, err := b.ReadCloser.Read(one[:]); n == 0 {
			return 0, err // the end, as it should be
		}
		cut(b.ctx)
		return 0, ErrTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// limitResponses returns a copy of c whose answers are cut at max bytes
// (MaxResponse when max is 0 or more).
func limitResponses(c *http.Client, max int64) *http.Client {
	if max <= 0 || max > MaxResponse {
		max = MaxResponse
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	limited := *c
	limited.Transport = limitedTransport{next: next, max: max}
	return &limited
}

// cutFlag is raised in a request's context when an answer was cut.
type cutFlag struct{ atomic.Bool }

type cutKey struct{}

// watchCuts returns ctx with a flag that limitedTransport raises.
func watchCuts(ctx context.Context) (context.Context, *cutFlag) {
	f := &cutFlag{}
	return context.WithValue(ctx, cutKey{}, f), f
}

func cut(ctx context.Context) {
	if f, ok := ctx.Value(cutKey{}).(*cutFlag); ok {
		f.Store(true)
	}
}

// orTooLarge returns ErrTooLarge, with what happened, when an answer was
// cut during the call that failed with err; err otherwise. Libraries
// between (go-oidc, x/oauth2) do not always keep the error's chain.
func orTooLarge(f *cutFlag, err error) error {
	if err != nil && f.Load() && !errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w (at most %d bytes): %v", ErrTooLarge, MaxResponse, err)
	}
	return err
}

// checkSizes refuses a result holding a value longer than a real
// provider sends.
func checkSizes(r Result) error {
	for _, v := range []struct {
		what, value string
		max         int
	}{
		{"a name", r.Identity.Name, maxName},
		{"an email address", r.Identity.Email, maxEmail},
		{"a picture URL", r.Identity.Picture, maxPicture},
		{"a subject (sub)", r.Subject, maxSubject},
		{"a session id (sid)", r.SessionID, maxSessionID},
	} {
		if n := utf8.RuneCountInString(v.value); n > v.max {
			return fmt.Errorf("%w: %s of %d characters (at most %d)", ErrTooLarge, v.what, n, v.max)
		}
	}
	return nil
}
