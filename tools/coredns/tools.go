//go:build tools

// Package tools pins github.com/coredns/coredns for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/coredns/coredns"
