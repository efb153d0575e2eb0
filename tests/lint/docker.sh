#!/usr/bin/env bash
# Lints every file in docker/ (no container engine needed; none is run):
#   Dockerfile              dockerfile-utils lint (Docker's own parser rules: any
#                           warning fails) and dockerfilelint (best practices)
#   *.yaml, *.yml           yamllint --strict (Debian), default rules
#   compose.yaml            dclint (Compose JSON schema + best practices, warnings fail)
#   k8s/*.yaml              Kubernetes schemas and strict field names (check.mjs)
#   *.sh                    shellcheck (Debian) and bash -n
#   everything              tests/lint/docker/check.mjs: the files against each
#                           other and against lossd (ports, probes, env names, ...)
# A file in docker/ that no linter covers fails the run.
#
# The npm tools are pinned in tests/lint/docker/package-lock.json and installed
# with `npm ci` into build-ci/lint-docker (outside the source tree); yamllint
# and shellcheck come from Debian (installed here when missing, as .ci/deps
# does). Needs Node.js >= 18.20 (Debian 12's nodejs is 18.20).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
prefix=build-ci/lint-docker
lockdir=tests/lint/docker

# ---- tools ----
debs=()
command -v yamllint >/dev/null 2>&1 || debs+=(yamllint)
command -v shellcheck >/dev/null 2>&1 || debs+=(shellcheck)
if [ ${#debs[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "tests/lint/docker.sh: installing ${debs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
fi

mkdir -p "$prefix"
cp "$lockdir/package.json" "$lockdir/package-lock.json" "$lockdir/check.mjs" "$prefix/"
if [ ! -x "$prefix/node_modules/.bin/dclint" ] || ! cmp -s "$lockdir/package-lock.json" "$prefix/.installed-lock"; then
  (cd "$prefix" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$lockdir/package-lock.json" "$prefix/.installed-lock"
fi
bin=$root/$prefix/node_modules/.bin
version() { node -p "require('$root/$prefix/node_modules/$1/package.json').version"; }
echo "tools: node $(node --version), dockerfile-utils $(version dockerfile-utils)," \
  "dockerfilelint $(version dockerfilelint), dclint $(version dclint)," \
  "kubernetes-models $(version kubernetes-models), typescript $(version typescript)," \
  "$(yamllint --version), shellcheck $(shellcheck --version | sed -n 's/^version: //p')"

# ---- lint ----
failed=()
ran=0
run() { # label command...: runs one linter, remembers a failure
  local label=$1
  shift
  ran=$((ran + 1))
  printf -- '-- %s\n' "$label"
  if ! "$@"; then
    failed+=("$label")
  fi
}
# dockerfile-utils exits 0 on warnings: any output is a problem.
dockerfile_utils() {
  local out
  out=$("$bin/dockerfile-utils" lint "$1") || true
  [ -z "$out" ] && return 0
  printf '%s\n' "$out"
  return 1
}
yaml_lint() { yamllint --strict -f parsable -d 'extends: default' "$@"; }

mapfile -t files < <(find docker -type f | LC_ALL=C sort)
for f in "${files[@]}"; do
  case $f in
    docker/Dockerfile)
      run "dockerfile-utils lint $f" dockerfile_utils "$f"
      run "dockerfilelint $f" "$bin/dockerfilelint" "$f"
      ;;
    docker/Dockerfile.dockerignore | docker/README.md)
      ;; # check.mjs: the ignore file lets every COPY source through; the
         # README names only paths that exist
    docker/compose.yaml)
      run "yamllint $f" yaml_lint "$f"
      run "dclint $f" "$bin/dclint" --max-warnings 0 "$f"
      ;;
    docker/prometheus.yml | docker/k8s/*.yaml)
      run "yamllint $f" yaml_lint "$f"
      ;; # and check.mjs (k8s: schemas and strict fields; prometheus: target)
    *.sh)
      run "shellcheck $f" shellcheck "$f"
      run "bash -n $f" bash -n "$f"
      run "executable $f" test -x "$f"
      ;;
    *)
      echo "tests/lint/docker.sh: no linter for $f: add one here" >&2
      failed+=("no linter for $f")
      ;;
  esac
done
run "shellcheck tests/lint/docker.sh" shellcheck tests/lint/docker.sh
run "check.mjs (schemas, strict k8s fields, consistency)" node "$prefix/check.mjs" "$root"

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'docker lint FAILED (%d of %d linter runs):\n' "${#failed[@]}" "$ran"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "docker lint: all $ran linter runs clean on ${#files[@]} files in docker/"
