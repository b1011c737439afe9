//go:build tools

// Package tools pins github.com/docker/compose/v2/cmd for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/docker/compose/v2/cmd"
