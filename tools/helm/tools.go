//go:build tools

// Package tools pins helm.sh/helm/v3/cmd/helm for raibid-deploy (see tasks/tools.py).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
