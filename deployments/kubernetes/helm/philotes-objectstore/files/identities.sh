#!/bin/sh
# Renders SeaweedFS' S3 identities from the mounted secret files (never from the environment)
# into a memory-backed volume the server reads: one identity, the keys the roles use.
set -eu
dir=${SECRETS_DIR:?the directory of the secret files}
key=$(cat "$dir/s3-access-key-id")
secret=$(cat "$dir/s3-secret-access-key")
umask 077
printf '{"identities":[{"name":"philotes","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
  "$key" "$secret" > "${CONFIG_DIR:?where to write s3.json}/s3.json"
