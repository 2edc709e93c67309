#!/usr/bin/env bash
# Runs one real Elasticsearch 8 node for the tests, bound to 127.0.0.1.
#   elasticsearch.sh run   NODE_DIR HTTP_PORT   # foreground (the pytest fixture uses this)
#   elasticsearch.sh start NODE_DIR HTTP_PORT   # background, waits until the node answers
#   elasticsearch.sh stop  NODE_DIR
# With ES_SECURE_USER=name:password the node serves HTTPS (a CA of its own, in
# NODE_DIR/config/certs/ca.crt) and requires that user (basic auth).
# ES_EXTRA_SETTINGS="key=value ..." adds node settings.
# NODE_DIR keeps config, data and logs, so stop + start keeps the indices (outage tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?run|start|stop}
node_dir=${2:?node dir}
es_version=$(sed -n 's:.*<elasticsearch.version>\(.*\)</elasticsearch.version>.*:\1:p' "$here/pom.xml")
if [ "$(id -u)" -eq 0 ]; then
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-/opt/logguardian-services}
else
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logguardian-services}
fi
es_home="$services_dir/elasticsearch-$es_version"

case "$cmd" in
run)
  port=${3:?http port}
  [ -x "$es_home/bin/elasticsearch" ] || {
    echo "Elasticsearch $es_version not installed in $services_dir: run tests/services/install.sh" >&2
    exit 2
  }
  mkdir -p "$node_dir/data" "$node_dir/logs" "$node_dir/tmp"
  if [ ! -d "$node_dir/config" ]; then
    cp -r "$es_home/config" "$node_dir/config"
    # The stock options write GC logs relative to ES_HOME, which is read-only here.
    printf '%s\n' '-XX:+UseG1GC' '-Djava.io.tmpdir=${ES_TMPDIR}' \
      '20-:--add-modules=jdk.incubator.vector' '-XX:+ExitOnOutOfMemoryError' \
      > "$node_dir/config/jvm.options"
  fi
  if [ -z "${ES_JAVA_HOME:-}" ]; then
    ES_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    export ES_JAVA_HOME
  fi
  export ES_PATH_CONF="$node_dir/config" ES_TMPDIR="$node_dir/tmp"
  security=(-Expack.security.enabled=false)
  if [ -n "${ES_SECURE_USER:-}" ]; then
    # ES_SECURE_USER=name:password → TLS on HTTP (own CA) + that superuser in the file realm.
    certs="$node_dir/config/certs"
    if [ ! -f "$certs/node.crt" ]; then
      mkdir -p "$certs"
      openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=logguardian-test-ca" \
        -keyout "$certs/ca.key" -out "$certs/ca.crt" 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$certs/node.key" -out "$certs/node.csr" 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$certs/san.ext"
      openssl x509 -req -in "$certs/node.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
        -CAcreateserial -days 30 -extfile "$certs/san.ext" -out "$certs/node.crt" 2>/dev/null
      "$es_home/bin/elasticsearch-users" useradd "${ES_SECURE_USER%%:*}" \
        -p "${ES_SECURE_USER#*:}" -r superuser
    fi
    security=(-Expack.security.enabled=true -Expack.security.http.ssl.enabled=true
      -Expack.security.http.ssl.key=certs/node.key
      -Expack.security.http.ssl.certificate=certs/node.crt)
  fi
  extra=()
  for setting in ${ES_EXTRA_SETTINGS:-}; do extra+=("-E$setting"); done
  drop=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R logguardian-es: "$node_dir"
    drop=(setpriv --reuid=logguardian-es --regid=logguardian-es --clear-groups)
  fi
  export ES_JAVA_OPTS="${ES_JAVA_OPTS:--Xms256m -Xmx1g}"
  cd "$node_dir"
  exec "${drop[@]}" "$es_home/bin/elasticsearch" \
    -Ehttp.host=127.0.0.1 -Ehttp.port="$port" \
    -Etransport.host=127.0.0.1 -Etransport.port=0 \
    -Ediscovery.type=single-node -Ecluster.name=logguardian-test \
    -Epath.data="$node_dir/data" -Epath.logs="$node_dir/logs" \
    "${security[@]}" "${extra[@]}" \
    -Ecluster.routing.allocation.disk.threshold_enabled=false
  ;;
start)
  port=${3:?http port}
  mkdir -p "$node_dir"
  setsid "$0" run "$node_dir" "$port" >"$node_dir/console.log" 2>&1 &
  echo $! >"$node_dir/pid"
  probe=(curl -sf "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s")
  if [ -n "${ES_SECURE_USER:-}" ]; then
    probe=(curl -sf --cacert "$node_dir/config/certs/ca.crt" -u "$ES_SECURE_USER"
      "https://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s")
  fi
  for _ in $(seq 180); do
    if "${probe[@]}" >/dev/null 2>&1; then
      echo "elasticsearch up on port $port"; exit 0
    fi
    kill -0 "$(cat "$node_dir/pid")" 2>/dev/null || { tail -40 "$node_dir/console.log" >&2; exit 1; }
    sleep 1
  done
  echo "elasticsearch did not answer within 180 s" >&2; exit 1
  ;;
stop)
  pid=$(cat "$node_dir/pid")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  ;;
*) echo "usage: $0 run|start|stop NODE_DIR [HTTP_PORT]" >&2; exit 2 ;;
esac
