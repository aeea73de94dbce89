package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"example.com/oauth-sessions/internal/testservers"
)

// count returns how many elements match the CSS selector sel.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
	if err != nil {
		t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// phone makes the page a phone's (360 CSS pixels wide, touch, mobile
// viewport), in the dark theme when dark.
func phone(t *testing.T, ctx context.Context, app *testservers.Proc, dark bool) {
	t.Helper()
	view(t, ctx, 360, 740, true, dark)
}

// view sets the viewport and the preferred colour scheme.
func view(t *testing.T, ctx context.Context, w, h int64, mobile, dark bool) {
	t.Helper()
	scale := 1.0
	if mobile {
		scale = 3
	}
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: w, Height: h, DeviceScaleFactor: scale, Mobile: mobile}); err != nil {
		t.Fatal(err)
	}
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		t.Fatal(err)
	}
}

// axeSource is axe-core, installed with npm by ./scripts/test.
func axeSource(t *testing.T) string {
	t.Helper()
	root, err := testservers.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, ".cache", "node", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core is not installed (./scripts/test installs it: npm install --prefix .cache/node axe-core@4.14.1): %v", err)
	}
	return string(b)
}

// accessible runs axe-core on the page at WCAG 2.1 A and AA and its best
// practices, fails the test on any violation, and checks that the page
// does not scroll sideways.
func accessible(t *testing.T, ctx context.Context, axe, what string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](axe+"\n;true")); err != nil {
		t.Fatalf("inject axe-core on %s: %v", what, err)
	}
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})
		.then(r => r.violations.map(v => v.id + " (" + v.impact + "): " + v.help + " at " + v.nodes.map(n => n.target.join(" ")).join(", ")))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("axe on %s: %v", what, err)
	}
	if len(violations) > 0 {
		t.Errorf("%s: %d accessibility violations:\n  %s", what, len(violations), strings.Join(violations, "\n  "))
	}
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil || wide {
		t.Errorf("%s scrolls sideways (%v)", what, err)
	}
}

// TestBrowserEveryPageIsAccessible: every page, on a desktop and on a
// phone, in the light and the dark theme, passes axe-core with zero
// violations and never scrolls sideways: the demo provider's login page,
// the home page signed out, signed in and after signing out (with its
// notice), your sessions (with another session to sign out), the example
// protected page and an error page.
func TestBrowserEveryPageIsAccessible(t *testing.T) {
	axe := axeSource(t)
	app, base := startApp(t, "") // the built-in demo provider
	for _, size := range []struct {
		name   string
		w, h   int64
		mobile bool
	}{{"desktop", 1280, 800, false}, {"phone", 360, 740, true}} {
		for _, dark := range []bool{false, true} {
			mode := size.name + ", light"
			if dark {
				mode = size.name + ", dark"
			}
			t.Run(mode, func(t *testing.T) {
				other := newBrowser(t) // another session of the same user, to list
				do(t, other, app, chromedp.Navigate(base+"/"))
				signIn(t, other, app, "Ada Lovelace", "ada@example.com", false)

				ctx := newBrowser(t)
				view(t, ctx, size.w, size.h, size.mobile, dark)
				check := func(what string) { t.Helper(); accessible(t, ctx, axe, mode+": "+what) }
				do(t, ctx, app, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("sign-in")))
				check("home, signed out")
				do(t, ctx, app, chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("email")))
				check("the demo provider's login page")
				do(t, ctx, app, chromedp.SetValue(chromedp.ID("name"), "Ada Lovelace"), chromedp.SetValue(chromedp.ID("email"), "ada@example.com"),
					chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("user-name")))
				check("home, signed in")
				do(t, ctx, app, chromedp.Navigate(base+"/sessions"), chromedp.WaitVisible(chromedp.ID("revoke-others")))
				check("your sessions")
				do(t, ctx, app, chromedp.Click(chromedp.CSS(`form[action="/sessions/revoke"] button`)), chromedp.WaitVisible(chromedp.ID("notice")))
				check("your sessions, after signing one out")
				do(t, ctx, app, chromedp.Navigate(base+"/app"), chromedp.WaitVisible(chromedp.ID("app-greeting")))
				check("the example protected page")
				do(t, ctx, app, chromedp.Navigate(base+"/no-such-page"), chromedp.WaitVisible(chromedp.ID("error-title")))
				check("an error page")
				do(t, ctx, app, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("sign-out")), chromedp.Click(chromedp.ID("sign-out")),
					chromedp.WaitVisible(chromedp.ID("notice")))
				check("home, after signing out")
			})
		}
	}
}

// TestBrowserRevokeWithoutJavaScript: with scripts off, your sessions
// still signs another browser out, says so, and shows the empty state.
func TestBrowserRevokeWithoutJavaScript(t *testing.T) {
	app, base := startApp(t, "")
	other := newBrowser(t)
	do(t, other, app, chromedp.Navigate(base+"/"))
	signIn(t, other, app, "Ada Lovelace", "ada@example.com", false)

	ctx := newBrowser(t)
	do(t, ctx, app, chromedp.Navigate(base+"/"))
	signIn(t, ctx, app, "Ada Lovelace", "ada@example.com", false)
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, app, chromedp.Navigate(base+"/sessions"), chromedp.WaitVisible(chromedp.ID("sessions")))
	if n := count(t, ctx, "li.session"); n != 2 {
		t.Fatalf("%d sessions listed, want 2", n)
	}
	if got := text(t, ctx, "sessions"); !strings.Contains(got, "Sign out this browser") {
		t.Fatalf("the current session's button does not say it signs this browser out:\n%s", got)
	}
	do(t, ctx, app, chromedp.Click(chromedp.CSS(`form[action="/sessions/revoke"] button`)), chromedp.WaitVisible(chromedp.ID("no-others")))
	if got := text(t, ctx, "notice"); !strings.HasPrefix(got, "Signed out Headless Chrome") {
		t.Fatalf("after the revoke the page says %q", got)
	}
	do(t, other, app, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("signed-out")))
}

// TestBrowserCancelIsNoDeadEnd: Cancel at the provider lands on the home
// page with a notice and the sign-in button; a reload does not repeat it;
// Back and signing in again with the used link lands home too.
func TestBrowserCancelIsNoDeadEnd(t *testing.T) {
	app, base := startApp(t, "")
	ctx := newBrowser(t)
	do(t, ctx, app, chromedp.Navigate(base+"/"), chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("deny")),
		chromedp.Click(chromedp.ID("deny")), chromedp.WaitVisible(chromedp.ID("notice")))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if got := text(t, ctx, "notice"); loc != base+"/" || !strings.Contains(got, "You cancelled the sign-in") {
		t.Fatalf("after Cancel: %s says %q", loc, got)
	}
	if n := count(t, ctx, "#sign-in"); n != 1 {
		t.Fatal("no sign-in button after Cancel")
	}
	do(t, ctx, app, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("sign-in")))
	if n := count(t, ctx, "#notice"); n != 0 {
		t.Fatal("the notice came back on reload")
	}
	// Back to the provider's page, and sign in with the spent link.
	do(t, ctx, app, chromedp.NavigateBack(), chromedp.WaitVisible(chromedp.ID("allow")), chromedp.Click(chromedp.ID("allow")),
		chromedp.WaitVisible(chromedp.ID("notice")))
	if got := text(t, ctx, "notice"); !strings.Contains(got, "already used") {
		t.Fatalf("signing in with a spent link says %q", got)
	}
	if n := count(t, ctx, "#error-title"); n != 0 {
		t.Fatal("an error page after Back")
	}
}
