// The Go modules whose config/crd/bases/*.yaml are the CRDs `validate:*` and the tests
// use (`doit crds` copies them into build/crds/). Nothing imports these modules: do not
// run `go mod tidy` here, it would drop every line. Why each version: README.md.
module raibid-deploy/tools/crds

go 1.26.0

require (
	github.com/fluxcd/helm-controller v1.6.0
	github.com/fluxcd/image-automation-controller v1.1.2
	github.com/fluxcd/image-reflector-controller v1.1.1
	github.com/fluxcd/kustomize-controller v1.7.3
	github.com/fluxcd/notification-controller v1.9.2
	github.com/fluxcd/source-controller v1.8.0
	github.com/kedacore/keda/v2 v2.20.2
)
