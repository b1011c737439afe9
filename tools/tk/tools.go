//go:build tools

// Package tools pins github.com/grafana/tanka/cmd/tk for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/grafana/tanka/cmd/tk"
