#!/bin/sh
# Lakekeeper's first start: bootstrap the server, then the warehouse `philotes` on the local S3
# server's bucket `lake` (idempotent: an existing warehouse is left as it is).
set -eu
api=http://lakekeeper:8181/management/v1
curl -sf -X POST "$api/bootstrap" -H 'Content-Type: application/json' -d '{"accept-terms-of-use": true}' || true
if curl -sf "$api/warehouse" | grep -q '"name":"philotes"'; then
  echo "warehouse philotes exists"
  exit 0
fi
curl -sf -X POST "$api/warehouse" -H 'Content-Type: application/json' -d "{
  \"warehouse-name\": \"philotes\",
  \"storage-profile\": {\"type\": \"s3\", \"bucket\": \"lake\", \"key-prefix\": \"warehouse\", \"endpoint\": \"http://s3:8333\",
    \"region\": \"eu-central-1\", \"path-style-access\": true, \"flavor\": \"s3-compat\", \"sts-enabled\": false},
  \"storage-credential\": {\"type\": \"s3\", \"credential-type\": \"access-key\",
    \"aws-access-key-id\": \"$S3_ACCESS_KEY_ID\", \"aws-secret-access-key\": \"$S3_SECRET_ACCESS_KEY\"}
}"
echo "warehouse philotes made"
