//go:build tools

// Package tools pins github.com/yannh/kubeconform/cmd/kubeconform for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/yannh/kubeconform/cmd/kubeconform"
