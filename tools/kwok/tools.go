//go:build tools

// Package tools pins sigs.k8s.io/kwok/cmd/kwok (fake nodes and pods for the test control
// plane) for raibid-deploy (see tasks/tools.py).
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
