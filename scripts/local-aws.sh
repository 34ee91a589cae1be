#!/usr/bin/env bash
# Starts moto (the AWS stand-in) on 127.0.0.1:${MOTO_PORT:-5000} if nothing answers there, and
# creates what template.yaml declares for the functions: the FIFO booking queue, its FIFO
# dead-letter queue and the connections table (keys pk/sk, indexes byUser/byShow, TTL
# expiresAt). Prints the environment for `cargo lambda watch` as `export` lines:
#   eval "$(bash scripts/local-aws.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash scripts/aws-tools.sh | tail -1)
port=${MOTO_PORT:-5000}
endpoint="http://127.0.0.1:$port"
if ! curl -fs "$endpoint/moto-api/" >/dev/null 2>&1; then
  nohup "$bin/moto_server" -H 127.0.0.1 -p "$port" >/tmp/moto-$port.log 2>&1 &
  for _ in $(seq 1 100); do curl -fs "$endpoint/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
fi
AWS_ENDPOINT_URL=$endpoint AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
"$bin/python" - <<'PY'
import boto3
sqs = boto3.client("sqs")
fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
dlq = sqs.create_queue(QueueName="seatbook-dlq.fifo", Attributes=fifo)["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue = sqs.create_queue(QueueName="seatbook-bookings.fifo", Attributes={
    **fifo, "VisibilityTimeout": "180",
    "RedrivePolicy": '{"deadLetterTargetArn":"%s","maxReceiveCount":"5"}' % dlq_arn})["QueueUrl"]
ddb = boto3.client("dynamodb")
if "seatbook-connections" not in ddb.list_tables()["TableNames"]:
    gsi = lambda name, key: {"IndexName": name, "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                             "Projection": {"ProjectionType": "ALL"}}
    ddb.create_table(TableName="seatbook-connections", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"}
                              for a in ("pk", "sk", "userId", "showId", "expiryShard")]
                             + [{"AttributeName": "tokenExpiresAt", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[gsi("byUser", "userId"), gsi("byShow", "showId"),
            {"IndexName": "byTokenExpiry",
             "KeySchema": [{"AttributeName": "expiryShard", "KeyType": "HASH"},
                           {"AttributeName": "tokenExpiresAt", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    ddb.update_time_to_live(TableName="seatbook-connections",
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"})
print(f"export BOOKING_QUEUE_URL={queue}")
print(f"export DEAD_LETTER_QUEUE_URL={dlq}")
print("export CONNECTIONS_TABLE=seatbook-connections")
PY
cat <<ENV
export AWS_ENDPOINT_URL=$endpoint AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export PATH="$bin:\$PATH"
ENV
