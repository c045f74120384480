#!/usr/bin/env bash
# The Kafka command-line tools of nyc311-kafka:local, under the official image's names:
# /opt/kafka/bin/kafka-topics.sh and the others are links to this script, which runs the matching
# tool class with `java -cp` on the image's jars (kafka-run-class.sh CLASS [ARGS...] runs any
# class). Log lines (WARN and up) go to stderr, the tool's own output to stdout.
set -euo pipefail

KAFKA_HOME=/opt/kafka

case $(basename "$0") in
    kafka-topics.sh) class=org.apache.kafka.tools.TopicCommand ;;
    kafka-consumer-groups.sh) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-broker-api-versions.sh) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-console-consumer.sh) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-console-producer.sh) class=org.apache.kafka.tools.ConsoleProducer ;;
    kafka-get-offsets.sh) class=org.apache.kafka.tools.GetOffsetShell ;;
    kafka-metadata-quorum.sh) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
    kafka-storage.sh) class=kafka.tools.StorageTool ;;
    kafka-run-class.sh)
        (($# >= 1)) || { echo "usage: kafka-run-class.sh CLASS [ARGS...]" >&2; exit 2; }
        class=$1
        shift
        ;;
    *) echo "$(basename "$0"): no Kafka tool of that name" >&2; exit 2 ;;
esac

# shellcheck disable=SC2086 # KAFKA_OPTS holds several options
exec java -Xmx256m -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties" \
    -Dnyc311.log.level=WARN -Dnyc311.log.target=SYSTEM_ERR ${KAFKA_OPTS:-} \
    -cp "$KAFKA_HOME/libs/*" "$class" "$@"
