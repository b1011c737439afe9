//go:build tools

// Package tools pins github.com/rhysd/actionlint/cmd/actionlint for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/rhysd/actionlint/cmd/actionlint"
