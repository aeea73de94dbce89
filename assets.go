// Package oauthsessions holds the files the binary embeds: the HTML
// templates and static assets, so the built binary runs from any folder.
package oauthsessions

import "embed"

// Files holds web/templates and static. Embedded files are read-only.
//
//go:embed web/templates static
var Files embed.FS
