package handlers_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestHTTPMetricsUseRouteTemplates: requests are counted by method, route
// template and status; paths nobody routed, made-up ids and made-up
// methods add no series of their own.
func TestHTTPMetricsUseRouteTemplates(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	do(t, c, "GET", "/api/auth/me")
	do(t, c, "GET", "/api/auth/me")
	do(t, c, "GET", "/static/style.css")
	for i := range 50 { // a scanner
		do(t, c, "GET", fmt.Sprintf("/wp-admin/%d.php", i))
		do(t, c, "DELETE", fmt.Sprintf("/api/auth/sessions/%d", i))
	}
	do(t, c, "PROPFIND", "/")
	m := do(t, c, "GET", "/metrics").body
	for _, want := range []string{
		`http_requests_total{method="GET",route="/api/auth/me",status="401"} 2`,
		`http_requests_total{method="GET",route="/static/*",status="200"} 1`,
		`http_requests_total{method="GET",route="unmatched",status="404"} 50`,
		`http_requests_total{method="DELETE",route="/api/auth/sessions/:id",status="401"} 50`,
		`http_request_duration_seconds_count{method="GET",route="/api/auth/me"} 2`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(m, `method="other"`) {
		t.Error("a made-up method is not counted as other")
	}
	for _, raw := range []string{"wp-admin", "/api/auth/sessions/7", "PROPFIND"} {
		if strings.Contains(m, raw) {
			t.Errorf("a raw path or method is a label: %s", raw)
		}
	}
}
