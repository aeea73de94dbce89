package deploycheck

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// noRedirects is a client that keeps cookies in jar and shows each
// redirect instead of following it.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// demoSignIn runs the demo login with c (which keeps cookies) against base:
// start, the provider's form, the callback.
func demoSignIn(c *http.Client, base string) error {
	res, err := c.Get(base + "/api/auth/google")
	if err != nil {
		return err
	}
	res.Body.Close()
	authURL, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.StatusCode != http.StatusFound || !strings.HasPrefix(authURL.String(), base+"/") {
		return fmt.Errorf("start: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	form := authURL.Query()
	form.Set("name", "Ada")
	form.Set("email", "ada@example.com")
	form.Set("action", "allow")
	res, err = c.PostForm(base+authURL.Path, form)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		return fmt.Errorf("provider form: %d", res.StatusCode)
	}
	res, err = c.Get(res.Header.Get("Location"))
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/" {
		return fmt.Errorf("callback: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return nil
}
