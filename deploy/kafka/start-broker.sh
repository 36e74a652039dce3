#!/usr/bin/env bash
# One secured Kafka node (KRaft, broker + controller) for the compose stack, from the secrets that
# deploy/make-secrets.sh made. Every listener authenticates: clients and brokers with SCRAM-SHA-512
# (clients over TLS), controllers with PLAIN as the admin; the authorizer denies what no ACL allows,
# and the admin is the only super user. The SCRAM users are made when the storage is first formatted;
# their passwords go to the storage tool in an argument file, never on a command line.
#
# Environment (defaults are the compose service's): KAFKA_LIBS, JAVA, SECRETS, DATA, CONF,
# ADVERTISED_HOST, BIND, PORT, INTERNAL_PORT, CONTROLLER_PORT, NODE_ID, PARTITIONS, HEAP_MB.
set -euo pipefail

libs="${KAFKA_LIBS:-/opt/kafka/libs}"
java="${JAVA:-java}"
secrets="${SECRETS:-/run/secrets}"
data="${DATA:-/var/lib/kafka/data}"
conf="${CONF:-/tmp/sparseinst-kafka}"
host="${ADVERTISED_HOST:-kafka}"
bind="${BIND:-0.0.0.0}"
port="${PORT:-9092}"
internal="${INTERNAL_PORT:-9094}"
controller="${CONTROLLER_PORT:-9093}"
node="${NODE_ID:-1}"

read_secret() { local v; v="$(<"$secrets/$1")"; [[ -n "$v" ]] || { echo "error: $secrets/$1 is empty" >&2; exit 2; }
                printf '%s' "$v"; }
admin_pw="$(read_secret kafka-admin.password)"
pipeline_pw="$(read_secret kafka-pipeline.password)"
for f in kafka-broker.pem kafka-ca.pem; do
  [[ -s "$secrets/$f" ]] || { echo "error: $secrets/$f is missing: run deploy/make-secrets.sh" >&2; exit 2; }
done
jaas_quote() { local v="${1//\\/\\\\}"; printf '%s' "${v//\"/\\\"}"; }
admin_jaas="$(jaas_quote "$admin_pw")"

umask 077  # the properties hold the admin's password
mkdir -p "$conf" "$data"
scram="org.apache.kafka.common.security.scram.ScramLoginModule required"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
cat > "$conf/server.properties" <<EOF
process.roles=broker,controller
node.id=${node}
controller.quorum.voters=${node}@${host}:${controller}
listeners=CLIENT://${bind}:${port},INTERNAL://${bind}:${internal},CONTROLLER://${bind}:${controller}
advertised.listeners=CLIENT://${host}:${port},INTERNAL://${host}:${internal}
listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=${scram};
listener.name.internal.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=${scram} username="admin" password="${admin_jaas}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=${plain} username="admin" password="${admin_jaas}" user_admin="${admin_jaas}";
ssl.keystore.type=PEM
ssl.keystore.location=${secrets}/kafka-broker.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
log.dirs=${data}
num.partitions=${PARTITIONS:-12}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=8388608
EOF
# for the health check and for operators' admin commands (kafka-*.sh --command-config)
cat > "$conf/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=${scram} username="admin" password="${admin_jaas}";
ssl.truststore.type=PEM
ssl.truststore.location=${secrets}/kafka-ca.pem
EOF
cat > "$conf/log4j.properties" <<EOF
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
EOF
run_java=("$java" "-Dlog4j.configuration=file:$conf/log4j.properties" -cp "$libs/*")

if [[ ! -f "$data/meta.properties" ]]; then
  cluster_id="$("${run_java[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)"
  q() { local v="${1//\\/\\\\}"; printf '"%s"\n' "${v//\"/\\\"}"; }  # the Java launcher's argument-file quoting
  {
    echo kafka.tools.StorageTool
    for a in format -t "$cluster_id" -c "$conf/server.properties" \
             --add-scram "SCRAM-SHA-512=[name=admin,password=${admin_pw}]" \
             --add-scram "SCRAM-SHA-512=[name=pipeline,password=${pipeline_pw}]"; do q "$a"; done
  } > "$conf/format.args"
  "${run_java[@]}" "@$conf/format.args"
  rm -f "$conf/format.args"
fi
exec "${run_java[@]}" "-Xmx${HEAP_MB:-1024}m" kafka.Kafka "$conf/server.properties"
