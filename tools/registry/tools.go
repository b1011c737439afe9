//go:build tools

// Package tools pins github.com/distribution/distribution/v3/cmd/registry for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
