//go:build tools

// Package tools pins github.com/tilt-dev/tilt/cmd/tilt for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/tilt-dev/tilt/cmd/tilt"
