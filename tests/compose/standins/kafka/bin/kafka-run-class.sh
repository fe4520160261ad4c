#!/usr/bin/env bash
# kafka-run-class.sh of the stand-in: the JVM options of the official script's variables.
base_dir=$(dirname "$0")/..
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j.configuration=file:$base_dir/config/tools-log4j.properties}"
# shellcheck disable=SC2086  # the option variables are word lists
exec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_LOG4J_OPTS -Dkafka.logs.dir="$base_dir/logs" \
  ${KAFKA_OPTS-} -cp "$base_dir/libs/*" "$@"
