//go:build tools

// Package k8s pins k8s.io/kubernetes so that `go mod tidy` in this wrapper
// module keeps the requirements needed to build kube-apiserver.
package k8s

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
