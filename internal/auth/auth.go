// Package auth runs the sign-in: the authorization-code flow with state,
// PKCE S256 and, for OpenID Connect, a nonce and the ID token's
// verification, against each kind of provider (OIDC for any issuer,
// Google's and the demo's included; a provider speaking only OAuth 2.0
// needs a type of its own), and the provider's side of signing out.
// Sessions are not its business; handlers keep the flow and the resulting
// identity in the session store.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Identity is who signed in, as the provider's verified ID token says.
type Identity struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Name     string `json:"name"`
	Picture  string `json:"picture"`
	Provider string `json:"provider"`
}

// DisplayName is how pages address the user: the name, else the email,
// else the provider's subject.
func (i Identity) DisplayName() string {
	switch {
	case i.Name != "":
		return i.Name
	case i.Email != "":
		return i.Email
	}
	return i.ID
}

// Flow is what a started login must remember until its callback, and
// nothing more: every started login is a record in the store for ten
// minutes, so it is kept small (short keys, 128-bit state and nonce).
type Flow struct {
	Provider string `json:"p"` // the Name of the provider it was started with
	State    string `json:"s"`
	Nonce    string `json:"n,omitempty"` // OpenID Connect only
	Verifier string `json:"v"`           // PKCE code verifier
	ReturnTo string `json:"r,omitempty"` // a relative path; "" is "/"
}

// newFlow starts a flow with fresh secrets.
func newFlow(provider, returnTo string, nonce bool) Flow {
	f := Flow{Provider: provider, State: randomString(), Verifier: oauth2.GenerateVerifier()}
	if nonce {
		f.Nonce = randomString()
	}
	if back := SafeReturnPath(returnTo); back != "/" {
		f.ReturnTo = back
	}
	return f
}

// FlowTTL is how long a started login may take, as in the original guide.
const FlowTTL = 10 * time.Minute

// Errors a caller tells apart to choose the page and status.
var (
	// ErrProviderUnreachable: discovery, the token or the key endpoint did
	// not answer. Trying again later may work.
	ErrProviderUnreachable = errors.New("sign-in provider unreachable")
	// ErrRejected: the provider answered but its answer does not verify
	// (bad signature, issuer, audience, nonce, expiry) or was refused.
	ErrRejected = errors.New("sign-in rejected")
	// ErrNoVerifiedEmail: the account has no email the provider vouches
	// for, and the provider's type needs one to sign anyone in.
	ErrNoVerifiedEmail = errors.New("no verified email address")
)

// Provider is one way to sign in: an OAuth 2.0 or OpenID Connect
// authorization server the app is registered with. Adding one is a type
// implementing this interface, its variables, and a line in the program's
// wiring; routes, buttons and sessions follow from Name and Label.
type Provider interface {
	// Name is the provider's route and the identity's provider:
	// /api/auth/{Name}, user.provider ("google", "demo", ...).
	Name() string
	// Label is how people know it, on the sign-in button: "Google".
	Label() string
	// Issuer is what the provider sends as RFC 9207's iss parameter with
	// its authorization response ("" when it sends none).
	Issuer() string
	// Start returns a new flow for a sign-in that comes back to returnTo,
	// and the provider URL to send the browser to.
	Start(ctx context.Context, returnTo string) (Flow, string, error)
	// Finish exchanges the code the callback brought and returns who
	// signed in. Errors wrap ErrProviderUnreachable, ErrRejected or
	// ErrNoVerifiedEmail.
	Finish(ctx context.Context, f Flow, code string) (Result, error)
}

// Result is a finished sign-in: who, and what a later sign-out needs.
type Result struct {
	Identity Identity
	// Subject is the provider's own id of the user (the ID token's sub).
	Subject string
	// SessionID is the provider's session (the ID token's sid), when the
	// provider says: a back-channel logout may name it.
	SessionID string
	// IDToken is set when the provider has an end_session_endpoint: the
	// session keeps it, sealed, as the id_token_hint of a later sign-out.
	IDToken string
	// Token is the provider's token answer (access token, expiry, refresh
	// token when one was issued), kept sealed in the session to call APIs
	// as the user; Scopes are those it grants.
	Token  *oauth2.Token
	Scopes []string
}

// LogoutProvider is implemented by OpenID Connect providers: sign-out at
// the provider, and sign-outs the provider tells the app about.
type LogoutProvider interface {
	Provider
	// EndSessionURL returns where to send the browser to sign out at the
	// provider too (RP-initiated logout), or "" when the provider has no
	// end_session_endpoint.
	EndSessionURL(ctx context.Context, idToken, postLogoutRedirect, state string) (string, error)
	// SignOutOrigins are the origins (scheme://host) a sign-out may send
	// the browser on to: the issuer's, and the end_session_endpoint's once
	// discovered. Pages allow them as form targets (CSP form-action).
	SignOutOrigins() []string
	// VerifyLogoutToken checks a back-channel logout token as OpenID
	// Connect Back-Channel Logout 1.0 §2.6 says, against now.
	VerifyLogoutToken(ctx context.Context, raw string, now time.Time) (LogoutToken, error)
}

// LogoutToken is a verified back-channel logout: the sessions to end are
// those of SessionID, or all of Subject's at this provider.
type LogoutToken struct {
	ID        string // jti, to refuse replays
	Subject   string
	SessionID string
	// PassesUntil is when a copy of the token stops passing the checks
	// (its exp, or its iat grown too old): how long to remember its jti.
	PassesUntil time.Time
}

// CheckState compares a callback's state with the flow's in constant time.
func CheckState(f Flow, state string) bool {
	return f.State != "" && subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) == 1
}

// EmailAllowed reports whether email is in one of the allowed domains; an
// empty list allows everyone.
func EmailAllowed(email string, domains []string) bool {
	if len(domains) == 0 {
		return true
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	domain := strings.ToLower(email[at+1:])
	for _, d := range domains {
		if domain == d {
			return true
		}
	}
	return false
}

// SafeReturnPath returns p if it is a path on this site, else "/". It refuses
// anything a browser could read as another origin: schemes, "//host",
// backslashes (browsers treat "/\host" as "//host"), control characters, and
// encoded forms of those.
func SafeReturnPath(p string) string {
	if p == "" || len(p) > 2048 || p[0] != '/' {
		return "/"
	}
	decoded := p
	for range 3 { // catch double and triple encoding too
		d, err := url.PathUnescape(decoded)
		if err != nil {
			return "/"
		}
		if d == decoded {
			break
		}
		decoded = d
	}
	for _, s := range []string{p, decoded} {
		if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
			return "/"
		}
		if strings.ContainsAny(s, "\\\x00\r\n\t") {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return p
}

// randomString returns 128 random bits, encoded: a state or a nonce.
func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// OwnerKey is the label under which a user's sessions are indexed in the
// store: a hash of the lower-cased email, so operators can find a user's
// sessions by address (web sessions revoke --user EMAIL) while a copy of the
// store holds no address in plain text.
func OwnerKey(email string) string {
	return label("owner:" + strings.ToLower(strings.TrimSpace(email)))
}

// Owner returns the index label of the identity: by email when there is
// one (so "your sessions" spans the providers an address signs in with),
// else by provider and subject.
func (i Identity) Owner() string {
	if i.Email != "" {
		return OwnerKey(i.Email)
	}
	return label("subject:" + i.ID)
}

// SubjectKey is the index label of a user at one provider: a back-channel
// logout naming only the subject ends every session filed under it.
func SubjectKey(provider, subject string) string {
	return label("sub:" + provider + "|" + subject)
}

// SessionKey is the index label of one provider session (sid).
func SessionKey(provider, sid string) string {
	return label("sid:" + provider + "|" + sid)
}

func label(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// Device returns a short description of a browser from its User-Agent,
// e.g. "Chrome on Linux", for the "your sessions" page.
func Device(userAgent string) string {
	ua := userAgent
	browser := "Unknown browser"
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"HeadlessChrome/", "Headless Chrome"},
		{"Chrome/", "Chrome"}, {"Chromium/", "Chromium"}, {"Safari/", "Safari"}, {"curl/", "curl"}, {"Go-http-client", "Go client"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	os := ""
	for _, o := range []struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			os = o.name
			break
		}
	}
	if os == "" {
		return browser
	}
	return browser + " on " + os
}
