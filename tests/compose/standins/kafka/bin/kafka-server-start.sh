#!/usr/bin/env bash
base_dir=$(dirname "$0")/..
: "${KAFKA_HEAP_OPTS:=-Xmx1G -Xms1G}"
export KAFKA_HEAP_OPTS
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:$base_dir/config/log4j.properties}"
exec "$base_dir/bin/kafka-run-class.sh" kafka.Kafka "$@"
