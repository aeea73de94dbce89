package devprovidertest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"time"
)

// SignInOption changes the authorization request SignIn submits to the
// provider's form, as a user agent could.
type SignInOption func(form url.Values)

// OfflineAccess makes SignIn ask for a refresh token whatever the app
// asked for: scope offline_access with prompt=consent (the provider
// ignores offline_access without it, as OpenID Connect Core §11 says).
func OfflineAccess() SignInOption {
	return func(form url.Values) {
		if scope := strings.Fields(form.Get("scope")); !slices.Contains(scope, "offline_access") {
			form.Set("scope", strings.Join(append(scope, "offline_access"), " "))
		}
		if prompt := strings.Fields(form.Get("prompt")); !slices.Contains(prompt, "consent") {
			form.Set("prompt", strings.Join(append(prompt, "consent"), " "))
		}
	}
}

// SignIn runs one whole login with a plain HTTP client, as a browser would,
// against an app (in development, cookie "sid") whose provider is this one,
// built in or standalone: start at appBase/api/auth/google, submit the
// provider's form, deliver the callback. It returns the session cookie's
// value once the callback's redirect has arrived. For tests and load tools.
func SignIn(appBase, name, email string, opts ...SignInOption) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(appBase + "/api/auth/google")
	if err != nil {
		return "", err
	}
	res.Body.Close()
	authURL, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.StatusCode != http.StatusFound {
		return "", fmt.Errorf("start login: status %d", res.StatusCode)
	}
	form := authURL.Query()
	form.Set("name", name)
	form.Set("email", email)
	form.Set("action", "allow")
	for _, o := range opts {
		o(form)
	}
	res, err = c.PostForm(authURL.Scheme+"://"+authURL.Host+authURL.Path, form)
	if err != nil {
		return "", err
	}
	res.Body.Close()
	res, err = c.Get(res.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		return "", fmt.Errorf("callback: status %d", res.StatusCode)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "sid" {
			return ck.Value, nil
		}
	}
	return "", fmt.Errorf("callback set no session cookie")
}
