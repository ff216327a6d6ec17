#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver, pinned in
# hack/k8s/go.mod) into .cache/k8s/kube-apiserver for the tests in
# internal/testpeer. Idempotent: does nothing when the binary is newer than
# hack/k8s/go.mod and hack/k8s/go.sum. A cold build takes many minutes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/.cache/k8s/kube-apiserver"

if [[ -x "$out" && "$out" -nt "$here/go.mod" && "$out" -nt "$here/go.sum" ]]; then
	echo "hack/k8s/build.sh: .cache/k8s/kube-apiserver is up to date, nothing to do"
	exit 0
fi

mkdir -p "$(dirname "$out")"
start=$SECONDS
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
if ! (cd "$here" && go build -trimpath -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver); then
	echo "hack/k8s/build.sh: building kube-apiserver FAILED" >&2
	exit 1
fi
mv -f "$tmp" "$out"
trap - EXIT
echo "hack/k8s/build.sh: built .cache/k8s/kube-apiserver in $((SECONDS - start))s"
