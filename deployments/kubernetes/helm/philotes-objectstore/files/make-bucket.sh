#!/bin/sh
# Makes the lake's bucket once the S3 server answers (a Helm hook after install and upgrade;
# an existing bucket is left as it is). Keys come from the mounted secret files.
set -eu
dir=${SECRETS_DIR:?the directory of the secret files}
bucket=${BUCKET:?the bucket to make}
AWS_ACCESS_KEY_ID=$(cat "$dir/s3-access-key-id")
AWS_SECRET_ACCESS_KEY=$(cat "$dir/s3-secret-access-key")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
i=0
while [ "$i" -lt 60 ]; do
  if aws s3api head-bucket --bucket "$bucket" 2>/dev/null; then
    echo "bucket $bucket exists at $AWS_ENDPOINT_URL"
    exit 0
  fi
  if aws s3 mb "s3://$bucket"; then
    exit 0
  fi
  i=$((i + 1))
  sleep 5
done
echo "could not make bucket $bucket at $AWS_ENDPOINT_URL in 5 minutes: read the objectstore pod's log (kubectl logs statefulset/…-objectstore)" >&2
exit 1
