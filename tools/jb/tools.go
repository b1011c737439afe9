//go:build tools

// Package tools pins github.com/jsonnet-bundler/jsonnet-bundler/cmd/jb for raibid-deploy (see tasks/tools.py).
package tools

import _ "github.com/jsonnet-bundler/jsonnet-bundler/cmd/jb"
