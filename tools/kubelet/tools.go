//go:build tools

// Package tools pins k8s.io/kubernetes/cmd/kubelet for raibid-deploy (see tasks/tools.py).
package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
