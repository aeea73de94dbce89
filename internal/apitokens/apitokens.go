// Package apitokens keeps the provider's tokens of a signed-in user in
// their session, sealed with the rest of the record, and hands a handler a
// valid access token: refreshed when it is about to expire, by one request
// at a time for the whole session across every tab and every instance, and
// never presenting a refresh token that may have been rotated already.
//
// Why one at a time: providers that rotate refresh tokens (Auth0, Okta,
// Keycloak, panva/oidc-provider) treat a rotated refresh token presented
// again as theft and revoke the whole grant. Two tabs refreshing at the
// same moment would sign the user out of the API everywhere.
package apitokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
	"golang.org/x/oauth2"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/metrics"
)

// Tokens is what a session keeps of the provider's token answer. It is
// sealed in the session record and never leaves the server except towards
// the provider (and the configured remote APIs, as a bearer token).
type Tokens struct {
	Access  string    `json:"a"`
	Type    string    `json:"t,omitempty"`
	Refresh string    `json:"r,omitempty"`
	Expiry  time.Time `json:"e,omitzero"` // zero: the provider gave none
	Scopes  []string  `json:"s,omitempty"`
	// Spending is set, before Refresh is presented to the provider, to
	// when that refresh began, and cleared when its outcome is recorded.
	// Found set by a later refresh, it means an earlier one may have had
	// Refresh rotated and died before saving the new one: Refresh is then
	// never presented again (see refreshLocked).
	Spending time.Time `json:"x,omitzero"`
	// Ended is what is left when the provider ended the app's access
	// (the tokens themselves are dropped): pages offer to reconnect.
	Ended bool `json:"end,omitempty"`
}

// FromOAuth2 is what a session keeps of a token answer received at now
// (by the app's clock, which tests move: the expiry is counted from it).
func FromOAuth2(tok *oauth2.Token, scopes []string, now time.Time) Tokens {
	expiry := tok.Expiry
	if tok.ExpiresIn > 0 {
		expiry = now.Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	return Tokens{Access: tok.AccessToken, Type: tok.TokenType, Refresh: tok.RefreshToken, Expiry: expiry, Scopes: scopes}
}

// Refreshable reports whether a refresh token is kept.
func (t Tokens) Refreshable() bool { return t.Refresh != "" }

// usable reports whether the access token may still be used at now: not
// the one an API has just refused, and not expiring within skew.
func (t Tokens) usable(now time.Time, skew time.Duration, refused string) bool {
	if t.Access == "" || t.Access == refused {
		return false
	}
	return t.Expiry.IsZero() || now.Add(skew).Before(t.Expiry)
}

// Of returns the tokens kept in a login session, if any.
func Of(s *sessions.Session) (Tokens, bool) {
	t, ok := httpsession.Value[Tokens](s, httpsession.KeyTokens)
	return t, ok && t.Access != ""
}

// Ended reports whether the session had API access that has ended
// (revoked at the provider, lost with an interrupted refresh).
func Ended(s *sessions.Session) bool {
	t, ok := httpsession.Value[Tokens](s, httpsession.KeyTokens)
	return ok && t.Ended
}

// Errors a caller tells apart to answer.
var (
	// ErrReconnect: the app has no usable access to the provider's API
	// for this session (none was granted, it was revoked, it expired
	// without a refresh token, or an interrupted refresh may have spent
	// it). The sign-in session itself is untouched; signing in again
	// ("Reconnect") grants access anew.
	ErrReconnect = errors.New("access to the provider's API must be granted again")
	// ErrProviderDown: the provider could not refresh the token now (no
	// answer, a 5xx, a timeout). The tokens are kept; try again later.
	ErrProviderDown = errors.New("the provider could not refresh the access token")
	// ErrBusy: another request kept refreshing this session's tokens for
	// longer than a request waits.
	ErrBusy = errors.New("the access token is being refreshed; try again")
	// ErrSignedOut: the session ended while its tokens were refreshed.
	ErrSignedOut = errors.New("the session has ended")
)

// Defaults of a Keeper.
const (
	// Skew: a token expiring within it is refreshed first, so that it
	// does not expire on its way to the API.
	Skew = 30 * time.Second
	// MaxWait bounds how long a request waits for another's refresh.
	MaxWait = 5 * time.Second
	// RefreshTimeout bounds one refresh call to the provider.
	RefreshTimeout = 10 * time.Second
	// lockTTL is how long a refresh lock outlives a holder that died. A
	// holder finishes within holdLimit, well inside it, so a live holder's
	// lock never expires under it (see httpsession.Manager.Lock).
	lockTTL   = 30 * time.Second
	holdLimit = 20 * time.Second
	// pollEvery is how often a waiting request looks at the session again.
	pollEvery = 50 * time.Millisecond
)

// Keeper hands out users' access tokens. One serves the whole app.
type Keeper struct {
	Sessions *httpsession.Manager
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// Now is the clock tokens expire by (time.Now when nil); tests move it.
	Now func() time.Time
	// MaxWait overrides the package default (tests).
	MaxWait time.Duration
}

func (k *Keeper) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// Token returns a usable access token of the login session sess (loaded
// for r), refreshing it first when it expires within Skew or when it is
// refused, the token an API has just refused (pass "" otherwise). w gets
// the session's cookie again if the session is saved. Errors: ErrReconnect,
// ErrProviderDown, ErrBusy, ErrSignedOut, or httpsession.ErrUnavailable.
func (k *Keeper) Token(w http.ResponseWriter, r *http.Request, sess *sessions.Session, p auth.APIProvider, refused string) (Tokens, error) {
	t, ok := Of(sess)
	if !ok {
		return Tokens{}, fmt.Errorf("%w: no tokens kept", ErrReconnect)
	}
	if t.usable(k.now(), Skew, refused) {
		return t, nil
	}
	if !t.Refreshable() {
		return Tokens{}, fmt.Errorf("%w: the access token expired and no refresh token was issued", ErrReconnect)
	}
	// From here the work is the session's, not only this request's: a
	// client that goes away must not cut a refresh between the provider's
	// answer and its record in the store.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), holdLimit)
	defer cancel()
	r = r.WithContext(ctx)
	lock := "refresh:" + httpsession.KeyOf(sess)
	maxWait := k.MaxWait
	if maxWait <= 0 {
		maxWait = MaxWait
	}
	var waitingSince time.Time // real time: how long this request waits
	for {
		got, unlock, err := k.Sessions.Lock(ctx, lock, lockTTL)
		if err != nil {
			return Tokens{}, err
		}
		if got {
			t, err := k.refreshLocked(w, r, sess, p, refused)
			if err := unlock(ctx); err != nil {
				// It expires by itself within lockTTL.
				k.Logger.Warn("Token refresh lock not released", "provider", p.Name(), "error", err)
			}
			if !waitingSince.IsZero() {
				k.Metrics.TokenRefreshWait(p.Name(), "took_over")
			}
			return t, err
		}
		// Another request (of this or another instance) is refreshing:
		// wait for its result rather than refresh again.
		if waitingSince.IsZero() {
			waitingSince = time.Now()
		} else if time.Since(waitingSince) > maxWait {
			k.Metrics.TokenRefreshWait(p.Name(), "timed_out")
			return Tokens{}, ErrBusy
		}
		select {
		case <-time.After(pollEvery):
		case <-ctx.Done():
			return Tokens{}, ErrBusy
		}
		found, err := k.Sessions.Reload(ctx, sess)
		switch {
		case err != nil:
			return Tokens{}, err
		case !found:
			return Tokens{}, ErrSignedOut
		}
		t, ok := Of(sess)
		if !ok {
			return Tokens{}, fmt.Errorf("%w: the tokens were dropped by another request", ErrReconnect)
		}
		if t.usable(k.now(), Skew, refused) {
			k.Metrics.TokenRefreshWait(p.Name(), "used_theirs")
			return t, nil
		}
	}
}

// refreshLocked refreshes the session's tokens; the caller holds the
// session's refresh lock.
//
// A rotated refresh token must never be presented again, whatever fails
// and wherever. The failure windows, and how each is closed:
//   - Before the marker is saved: nothing was presented; the next refresh
//     starts afresh (a dead holder's lock expires after lockTTL).
//   - After the marker is saved (Spending), until the outcome is saved:
//     the process may die, or the store may refuse the outcome, after
//     the provider rotated the token. The next refresh finds the marker
//     and drops the tokens instead of presenting them (ErrReconnect): a
//     reconnect for the user, never a revoked grant.
//   - The new tokens are saved before they are used: a request never
//     calls an API with tokens the store does not have.
//   - No answer at all (a timeout): the provider may or may not have
//     rotated; the marker is cleared and the tokens kept, because that is
//     what providers' reuse intervals (Okta's grace period, Auth0's
//     leeway) exist for, and the alternative is dropping the user's
//     access at every slow answer.
func (k *Keeper) refreshLocked(w http.ResponseWriter, r *http.Request, sess *sessions.Session, p auth.APIProvider, refused string) (Tokens, error) {
	ctx := r.Context()
	// Whoever held the lock before may have refreshed already.
	found, err := k.Sessions.Reload(ctx, sess)
	if err != nil {
		return Tokens{}, err
	}
	if !found {
		return Tokens{}, ErrSignedOut
	}
	t, ok := Of(sess)
	now := k.now()
	switch {
	case !ok:
		return Tokens{}, fmt.Errorf("%w: the tokens were dropped by another request", ErrReconnect)
	case t.usable(now, Skew, refused):
		return t, nil
	case !t.Refreshable():
		return Tokens{}, fmt.Errorf("%w: the access token expired and no refresh token was issued", ErrReconnect)
	case !t.Spending.IsZero():
		k.Metrics.TokenRefresh(p.Name(), "interrupted")
		k.Logger.Warn("Token refresh interrupted earlier; asking the user to reconnect", "provider", p.Name(),
			"session", httpsession.InfoOf(sess).Key, "since", t.Spending)
		k.drop(w, r, sess)
		return Tokens{}, fmt.Errorf("%w: an earlier refresh did not record its outcome", ErrReconnect)
	}

	t.Spending = now
	sess.Values[httpsession.KeyTokens] = t
	if err := sess.Save(r, w); err != nil {
		k.Metrics.TokenRefresh(p.Name(), "store_error")
		return Tokens{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, RefreshTimeout)
	tok, err := p.Refresh(callCtx, t.Refresh)
	cancel()
	switch {
	case err == nil:
		fresh := FromOAuth2(tok, auth.GrantedScopes(tok, t.Scopes), k.now())
		sess.Values[httpsession.KeyTokens] = fresh
		if err := sess.Save(r, w); err != nil {
			k.Metrics.TokenRefresh(p.Name(), "store_error")
			return Tokens{}, err // the marker stays: see above
		}
		k.Metrics.TokenRefresh(p.Name(), "ok")
		k.Logger.Info("Access token refreshed", "provider", p.Name(), "session", httpsession.InfoOf(sess).Key, "rotated", tok.RefreshToken != t.Refresh)
		return fresh, nil
	case errors.Is(err, auth.ErrGrantRevoked):
		k.Metrics.TokenRefresh(p.Name(), "invalid_grant")
		k.Logger.Info("Access to the provider's API revoked; the user must reconnect", "provider", p.Name(), "session", httpsession.InfoOf(sess).Key)
		k.drop(w, r, sess)
		return Tokens{}, fmt.Errorf("%w: %w", ErrReconnect, err)
	default:
		k.Metrics.TokenRefresh(p.Name(), "provider_error")
		k.Logger.Warn("Token refresh failed; tokens kept", "provider", p.Name(), "error", err)
		t.Spending = time.Time{}
		sess.Values[httpsession.KeyTokens] = t
		if err := sess.Save(r, w); err != nil {
			k.Logger.Warn("Token refresh marker not cleared", "provider", p.Name(), "error", err)
		}
		return Tokens{}, fmt.Errorf("%w: %w", ErrProviderDown, err)
	}
}

// drop forgets the session's tokens, keeping the session and the fact
// that it had access. If the store cannot take it, the next refresh drops
// them again.
func (k *Keeper) drop(w http.ResponseWriter, r *http.Request, sess *sessions.Session) {
	sess.Values[httpsession.KeyTokens] = Tokens{Ended: true}
	if err := sess.Save(r, w); err != nil {
		k.Logger.Warn("Dropped tokens not saved", "error", err)
	}
}

// Revoke revokes the tokens at the provider (RFC 7009), in the
// background, after the session holding them is gone: best effort, with
// a short timeout, never delaying the user's sign-out. Revoking the
// refresh token ends the whole grant at providers that have one.
func (k *Keeper) Revoke(p auth.APIProvider, t Tokens) {
	token, hint := t.Refresh, "refresh_token"
	if token == "" {
		token, hint = t.Access, "access_token"
	}
	if token == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		defer cancel()
		did, err := p.Revoke(ctx, token, hint)
		switch {
		case err != nil:
			k.Metrics.TokenRevocation(p.Name(), "failed")
			k.Logger.Warn("Token revocation failed", "provider", p.Name(), "error", err)
		case did:
			k.Metrics.TokenRevocation(p.Name(), "ok")
			k.Logger.Debug("Tokens revoked at the provider", "provider", p.Name())
		}
	}()
}

// revokeTimeout bounds a revocation at sign-out.
const revokeTimeout = 5 * time.Second
