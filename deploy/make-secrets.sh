#!/usr/bin/env bash
# Make the deployment's secrets once: a CA and the Kafka broker's TLS key and certificate, the SCRAM
# passwords of the brokers' admin and of the pipeline's user, and the key that opens Triton's model
# control (held by the rollout controller only). Files that exist are kept, so running it again never
# changes a password under a running cluster.
#
#   deploy/make-secrets.sh [DIR]        # DIR defaults to deploy/secrets (ignored by git)
#
# DIR is made readable by its owner only; the files in it are readable by the containers' users
# (compose bind-mounts each file as a secret, and the containers do not run as your user).
# DIR/k8s-secrets.yaml holds the same secrets as Kubernetes Secrets: kubectl apply -f it.
set -euo pipefail

dir="${1:-$(cd "$(dirname "$0")" && pwd)/secrets}"
broker_host="${KAFKA_HOST:-kafka}"
namespace="${K8S_NAMESPACE:-sparseinst}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 022

password() {  # $1: file; 32 random URL-safe characters, made once
  [[ -s "$1" ]] || openssl rand -base64 48 | tr -d '\n/+=' | head -c 32 > "$1"
}
password kafka-admin.password
password kafka-pipeline.password
password triton-control.key

if [[ ! -s kafka-ca.pem ]]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=sparseinst-kafka-ca" \
    -keyout kafka-ca.key -out kafka-ca.pem 2>/dev/null
  chmod 600 kafka-ca.key
fi
if [[ ! -s kafka-broker.pem ]]; then
  # the names clients reach the broker by: the compose service, and loopback for its own health check
  san="subjectAltName=DNS:${broker_host},DNS:localhost,IP:127.0.0.1"
  openssl req -newkey rsa:3072 -nodes -subj "/CN=${broker_host}" -keyout broker.key -out broker.csr 2>/dev/null
  openssl x509 -req -in broker.csr -CA kafka-ca.pem -CAkey kafka-ca.key -CAcreateserial -days 825 \
    -extfile <(printf '%s\n' "$san") -out broker.crt 2>/dev/null
  # Kafka's PEM keystore: the private key (PKCS#8) followed by the certificate chain
  { openssl pkcs8 -topk8 -nocrypt -in broker.key; cat broker.crt kafka-ca.pem; } > kafka-broker.pem
  rm -f broker.key broker.csr broker.crt kafka-ca.srl
fi

b64() { base64 < "$1" | tr -d '\n'; }
cat > k8s-secrets.yaml <<EOF
# made by deploy/make-secrets.sh; apply with: kubectl apply -f $(basename "$dir")/k8s-secrets.yaml
apiVersion: v1
kind: Secret
metadata: {name: sparseinst-kafka, namespace: ${namespace}}
type: Opaque
data:
  password: $(b64 kafka-pipeline.password)
  ca.pem: $(b64 kafka-ca.pem)
---
apiVersion: v1
kind: Secret
metadata: {name: sparseinst-triton-control, namespace: ${namespace}}
type: Opaque
data:
  key: $(b64 triton-control.key)
EOF
chmod 600 k8s-secrets.yaml
echo "secrets in $dir: kafka-ca.pem, kafka-broker.pem, kafka-admin.password, kafka-pipeline.password," \
  "triton-control.key, k8s-secrets.yaml"
