# Tools the deploy/ checks need, fetched once into $VISIONSTREAM_HOME (default ~/.cache/visionstream):
# kustomize built with the machine's Go, and the KEDA and Prometheus Operator modules whose CRDs hold the
# schemas of ScaledObject, TriggerAuthentication, ServiceMonitor and PrometheusRule. Sourced by scripts/test.sh;
# exports KUSTOMIZE, KEDA_CRDS and PROMETHEUS_OPERATOR_CRDS for the tests.
KUSTOMIZE_VERSION=v5.7.1
KEDA_VERSION=v2.17.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0
VS_HOME="${VISIONSTREAM_HOME:-$HOME/.cache/visionstream}"
command -v go >/dev/null 2>&1 || { echo "deploy-tools: Go is needed to build kustomize (https://go.dev/dl)" >&2; exit 1; }
export GOMODCACHE="$VS_HOME/gomod"
export KUSTOMIZE="$VS_HOME/bin/kustomize-$KUSTOMIZE_VERSION"
if [ ! -x "$KUSTOMIZE" ]; then
  echo "[setup] building kustomize $KUSTOMIZE_VERSION with $(go version | cut -d' ' -f3) (once)" >&2
  tmpbin="$(mktemp -d)"
  GOBIN="$tmpbin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  mkdir -p "$VS_HOME/bin" && mv "$tmpbin/kustomize" "$KUSTOMIZE" && rmdir "$tmpbin"
fi
module_dir() {  # download a module (checked against the Go checksum database) and print its directory
  go mod download -json "$1@$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])'
}
keda_dir="$(module_dir github.com/kedacore/keda/v2 "$KEDA_VERSION")"
prom_dir="$(module_dir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")"
[ -n "$keda_dir" ] && [ -n "$prom_dir" ] || { echo "deploy-tools: CRD modules not downloaded" >&2; exit 1; }
export KEDA_CRDS="$keda_dir/config/crd/bases"
export PROMETHEUS_OPERATOR_CRDS="$prom_dir/example/prometheus-operator-crd"
