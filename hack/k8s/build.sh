#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver, pinned in
# hack/k8s/go.mod) into .cache/k8s/kube-apiserver for the tests in
# internal/testpeer. Idempotent: does nothing when the binary is newer than
# hack/k8s/go.mod, go.sum and this script. A cold build takes about 8 minutes
# on 2 cores (and ~2.5 GB of Go build cache); a warm one well under a minute.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/.cache/k8s/kube-apiserver"

if [[ -x "$out" && "$out" -nt "$here/go.mod" && "$out" -nt "$here/go.sum" && "$out" -nt "$here/build.sh" ]]; then
	echo "hack/k8s/build.sh: .cache/k8s/kube-apiserver is up to date, nothing to do"
	exit 0
fi

# Stamp the release version (as a release build would) so that the server
# reports e.g. v1.36.3 rather than v0.0.0-master.
version="$(awk '{ for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i+1) ~ /^v[0-9]/) { print $(i+1); exit } }' "$here/go.mod")"
if [[ ! "$version" =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
	echo "hack/k8s/build.sh: cannot find the k8s.io/kubernetes version in hack/k8s/go.mod" >&2
	exit 1
fi
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=${BASH_REMATCH[1]} -X $pkg.gitMinor=${BASH_REMATCH[2]}"
	ldflags+=" -X $pkg.gitTreeState=clean"
done

mkdir -p "$(dirname "$out")"
start=$SECONDS
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
if ! (cd "$here" && go build -trimpath -ldflags="$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver); then
	echo "hack/k8s/build.sh: building kube-apiserver FAILED" >&2
	exit 1
fi
mv -f "$tmp" "$out"
trap - EXIT
echo "hack/k8s/build.sh: built .cache/k8s/kube-apiserver $version in $((SECONDS - start))s"
