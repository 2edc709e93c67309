#!/usr/bin/env bash
# Installs the real services the integration tests start on 127.0.0.1.
# Idempotent; fails loudly when something cannot be installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
# syslog-ng's http() destination: a real HTTP shipper for the ingest tests.
command -v syslog-ng >/dev/null || need_apt+=(syslog-ng-core)
dpkg -s syslog-ng-mod-http >/dev/null 2>&1 || need_apt+=(syslog-ng-mod-http)
# A real browser for the Grafana plugin test (driven by Playwright with this executable).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u)
fi

# Helm for the chart tests (helm lint / helm template), built from the Go module
# proxy into the project-local .tools/bin (git-ignored).
root=$(cd "$here/../.." && pwd)
GO=$(command -v go || echo /usr/local/go/bin/go)
# Go needs a cache dir; without HOME (bare CI env) keep it under .tools.
[ -n "${HOME:-}" ] || export GOPATH="$root/.tools/go" GOCACHE="$root/.tools/go-build"
if [ ! -x "$root/.tools/bin/helm" ]; then
  GOBIN="$root/.tools/bin" "$GO" install helm.sh/helm/v3/cmd/helm@v3.16.4
fi
# k8s-validate: strict decoding of rendered manifests into the Kubernetes API types.
if [ ! -x "$root/.tools/bin/k8s-validate" ] \
   || [ -n "$(find "$root/helm/validate" -newer "$root/.tools/bin/k8s-validate" -type f)" ]; then
  (cd "$root/helm/validate" && "$GO" build -o "$root/.tools/bin/k8s-validate" .)
fi

# Elasticsearch 8: Elastic's integration-test distribution from Maven Central (needs
# Java 17+ and Maven). ES refuses to run as root, so root runs it as a system user.
es_version=$(sed -n 's:.*<elasticsearch.version>\(.*\)</elasticsearch.version>.*:\1:p' "$here/pom.xml")
if [ "$(id -u)" -eq 0 ]; then
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-/opt/logguardian-services}
else
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logguardian-services}
fi
if [ ! -x "$services_dir/elasticsearch-$es_version/bin/elasticsearch" ]; then
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      openjdk-17-jre-headless maven
  fi
  mkdir -p "$services_dir"
  mvn -B -q -f "$here/pom.xml" dependency:unpack -Dservices.dir="$services_dir"
  chmod -R a+rX "$services_dir"
fi
# openssl makes the CA and node certificate of the HTTPS test node.
if ! command -v openssl >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openssl
fi
if [ "$(id -u)" -eq 0 ] && ! id logguardian-es >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin logguardian-es
fi
# Language runtimes whose real stack traces the exception tests produce (issue 14):
# python3 runs the tests; javac (a JDK, not just a JRE), node and go are also needed.
need_rt=()
command -v javac >/dev/null || need_rt+=(openjdk-17-jdk-headless)
command -v node >/dev/null || need_rt+=(nodejs)
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || need_rt+=(golang-go)
if [ ${#need_rt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_rt[@]}"
fi

# Fluent Bit, built from the vendored source (no registry ships it); cached there too.
fluent_bit=$(bash "$here/fluentbit.sh" | tail -1)
# An OpenAI-compatible LLM server (llama.cpp) + Gemma 3 270M for the explanation tests.
LOGGUARDIAN_SERVICES_DIR="$services_dir" bash "$here/llm.sh" >/dev/null
echo "services ready: prometheus, alertmanager, elasticsearch $es_version, $fluent_bit, llama.cpp server in $services_dir"
# Apache Kafka 4 (KRaft) from Maven Central for the consumer-group tests.
kafka=$(bash "$here/kafka.sh" install | tail -1)
echo "services ready: $kafka"
# The newest CPython on the machine, for the shutdown tests (asyncio changed in 3.12.1).
newest=$(bash "$here/newest_python.sh" | tail -1)
echo "services ready: $newest"
