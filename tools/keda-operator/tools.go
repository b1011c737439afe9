//go:build tools

// Package tools pins github.com/kedacore/keda/v2/cmd/operator (the KEDA operator) for
// raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/kedacore/keda/v2/cmd/operator"
