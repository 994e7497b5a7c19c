#!/usr/bin/env bash
# Builds the real components stowage's tests run against, from their Go modules (no downloads of
# release binaries, no Docker): etcd, kube-apiserver, kube-scheduler, kube-controller-manager,
# kubectl, kwok, helm, amazon-ec2-metadata-mock, Prometheus with promtool, and actionlint (for the
# release workflow).
#
#   tests/harness/build.sh          build what is missing, print the binary directory
#   tests/harness/build.sh --dir    only print the directory the binaries go to
#
# Binaries go to ~/.cache/stowage/bin/<hash>/, the hash covering the versions below and the
# pinned go.mod/go.sum files, so a warm run builds nothing and a version change builds a new set.
# Kubernetes and etcd pin different versions of shared libraries, hence one Go module each
# (kube/, etcd/); the others have clean module graphs and are built with `go install m/cmd@v`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

KUBE_VERSION=v1.36.3      # k8s.io/kubernetes (kube/go.mod pins it, staging modules at v0.36.3)
ETCD_VERSION=v3.6.8       # what Kubernetes v1.36.3's go.mod requires (etcd/go.mod)
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
AEMM_VERSION=v1.13.0
PROMETHEUS_VERSION=v0.316.0 # the Go module version of Prometheus 3.16; built without service discoveries
ACTIONLINT_VERSION=v1.7.12 # lints the release workflow (not in the hash: added to a built directory)
BUILD_REVISION=1          # bump when the way binaries are built changes


hash=$( (echo "$KUBE_VERSION $ETCD_VERSION $KWOK_VERSION $HELM_VERSION $AEMM_VERSION $PROMETHEUS_VERSION $BUILD_REVISION"
  cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum "$here"/etcd/main.go) |
  sha256sum | cut -c1-16)
out=${STOWAGE_BIN_DIR:-$HOME/.cache/stowage/bin/$hash}
if [ "${1:-}" = "--dir" ]; then
  echo "$out"
  exit 0
fi
# Each component below is built only when missing, so a tool added later is built into an
# existing directory without rebuilding the others.

export GOFLAGS="-mod=readonly -buildvcs=false"
export GOCACHE=${GOCACHE:-$HOME/.cache/stowage/go-build}
export GOTOOLCHAIN=local
mkdir -p "$out"
start=$(date +%s)
log() { printf '[build.sh %4ss] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }

if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/kubectl" ]; then
  log "kube-apiserver, kube-scheduler, kube-controller-manager, kubectl $KUBE_VERSION"
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  version_flags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$here/kube" && go build -trimpath -ldflags "-s -w $version_flags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl)
fi
if [ ! -x "$out/etcd" ]; then
  log "etcd $ETCD_VERSION"
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)
fi
install_tool() {
  local bin=$1 pkg=$2
  if [ ! -x "$out/$bin" ]; then
    log "$bin ($pkg)"
    GOBIN="$out" GOFLAGS= go install -trimpath -ldflags "-s -w" "$pkg"
  fi
}
install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
if [ ! -f "$out/kwok-stages.yaml" ]; then
  # kwok ships its default Stage documents in its module; assemble the ones the tests use:
  # nodes become Ready, pods become Running, complete, and graceful deletions finish.
  kwok_dir=$(GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  for stage in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$stage.yaml"
  done > "$out/kwok-stages.yaml"
fi
install_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
install_tool actionlint "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
install_tool ec2-metadata-mock "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$AEMM_VERSION"
if [ ! -x "$out/prometheus" ] || [ ! -x "$out/promtool" ]; then
  # Static scrape configs are all the tests use: every service discovery is left out
  # (Prometheus's remove_all_sd build tag), which spares the cloud SDKs' build.
  log "prometheus, promtool $PROMETHEUS_VERSION"
  GOBIN="$out" GOFLAGS= go install -trimpath -tags remove_all_sd -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
fi

touch "$out/.complete"
log "done: $(du -sh "$out" | cut -f1) in $out"
echo "$out"
