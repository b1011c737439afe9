//go:build tools

// Package tools pins github.com/docker/buildx/cmd/buildx for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/docker/buildx/cmd/buildx"
