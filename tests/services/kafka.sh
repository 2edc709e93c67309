#!/usr/bin/env bash
# A real Apache Kafka 4 broker for the tests: one combined broker+controller (KRaft),
# bound to 127.0.0.1, from the jars kafka-pom.xml lists (Maven Central).
#   kafka.sh install                      # fetch the jars (idempotent); prints the libs dir
#   kafka.sh run DATA_DIR PORT CTRL_PORT  # format DATA_DIR once, then run in the foreground
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?install|run}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka-pom.xml")
if [ "$(id -u)" -eq 0 ]; then
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-/opt/logguardian-services}
else
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logguardian-services}
fi
libs="$services_dir/kafka-$version/libs"

case "$cmd" in
install)
  if [ ! -f "$libs/kafka_2.13-$version.jar" ]; then
    if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        openjdk-17-jre-headless maven
    fi
    mkdir -p "$libs.tmp"
    mvn -B -q -Dstyle.color=never -f "$here/kafka-pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs.tmp"
    rm -rf "$libs" && mv "$libs.tmp" "$libs"
    chmod -R a+rX "$services_dir/kafka-$version"
  fi
  echo "kafka $version"
  ;;
run)
  data=${2:?data dir}
  port=${3:?broker port}
  ctrl=${4:?controller port}
  [ -f "$libs/kafka_2.13-$version.jar" ] || {
    echo "Kafka $version not installed in $services_dir: run tests/services/install.sh" >&2
    exit 2
  }
  mkdir -p "$data"
  props="$data/server.properties"
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  java_opts=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)
  if [ ! -f "$data/logs/meta.properties" ]; then
    java "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
      -t "TG9nR3VhcmRpYW5UZXN0MQ" -c "$props" --ignore-formatted
  fi
  exec java "${java_opts[@]}" -cp "$libs/*" kafka.Kafka "$props"
  ;;
*) echo "usage: $0 install | run DATA_DIR PORT CTRL_PORT" >&2; exit 2 ;;
esac
