package auth_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
)

// TestEndlessAnswerIsCutAtTheLimit: a UserInfo endpoint that would send
// hundreds of megabytes (an endless name) is refused as too large after
// about MaxResponse bytes are read: memory stays bounded whatever the
// provider sends.
func TestEndlessAnswerIsCutAtTheLimit(t *testing.T) {
	var written atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat("a", 64<<10))
		n, _ := w.Write([]byte(`{"sub":"x","name":"`))
		written.Add(int64(n))
		for written.Load() < 300<<20 { // 300 MB, unless the client hangs up first
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(endless.Close)
	dp, p := startOIDC(t)
	dp.SetTamper(devprovidertest.WithoutProfileInIDToken)
	dp.SetDiscovery(func(doc map[string]any) { doc["userinfo_endpoint"] = endless.URL })
	res, err := login(t, p, ada)
	if !errors.Is(err, auth.ErrTooLarge) {
		t.Fatalf("endless UserInfo: %+v %v, want ErrTooLarge", res.Identity, err)
	}
	endless.CloseClientConnections()
	// What the server wrote is what the client read, plus what the
	// sockets buffer between them.
	if w := written.Load(); w > 16<<20 {
		t.Fatalf("the provider wrote %d MB before the app hung up, want about the limit of %d MB", w>>20, auth.MaxResponse>>20)
	}
	t.Logf("endless UserInfo refused after the provider wrote %.1f MB (limit %d MB read)", float64(written.Load())/(1<<20), auth.MaxResponse>>20)
}

// TestOversizedValuesAreRefused: values longer than any provider sends
// are refused, never cut into another identity; a discovery document
// over the limit is refused before it is parsed.
func TestOversizedValuesAreRefused(t *testing.T) {
	for name, tamper := range map[string]func(map[string]any){
		"name of 300 characters":     func(c map[string]any) { c["name"] = strings.Repeat("é", 300) },
		"email of 400 characters":    func(c map[string]any) { c["email"] = strings.Repeat("a", 390) + "@example.com" },
		"picture URL of 3,000 bytes": func(c map[string]any) { c["picture"] = "https://example.com/" + strings.Repeat("p", 3000) },
		"sid of 300 characters":      func(c map[string]any) { c["sid"] = strings.Repeat("s", 300) },
	} {
		t.Run(name, func(t *testing.T) {
			dp, p := startOIDC(t)
			dp.SetTamper(tamper)
			res, err := login(t, p, ada)
			if !errors.Is(err, auth.ErrTooLarge) || !errors.Is(err, auth.ErrRejected) || res.Identity.ID != "" {
				t.Fatalf("%s: identity %q, %.200v; want ErrTooLarge and no identity", name, res.Identity.ID, err)
			}
		})
	}
	// At the limits: accepted as they are.
	dp, p := startOIDC(t)
	long := strings.Repeat("é", 256)
	dp.SetTamper(func(c map[string]any) { c["name"] = long })
	if res, err := login(t, p, ada); err != nil || res.Identity.Name != long {
		t.Fatalf("a name of 256 characters: %v, want it kept whole", err)
	}

	dp, p = startOIDC(t)
	dp.SetDiscovery(func(doc map[string]any) { doc["padding"] = strings.Repeat("x", auth.MaxResponse) })
	if _, _, err := p.Start(t.Context(), "/"); !errors.Is(err, auth.ErrTooLarge) {
		t.Fatalf("discovery document over the limit: %v, want ErrTooLarge", err)
	}
}
