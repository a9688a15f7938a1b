#!/usr/bin/env bash
# Restore a control database dump made by backup-db.sh into an empty database, after checking
# its SHA-256 checksum. Stop every Philotes role first (api, ingest, workers), and read "Backups
# and recovery" in docs/operations.md for what comes after (the slot, and when to resync).
#
#   PHILOTES_RESTORE_URL=postgres://…/philotes_new deployments/scripts/restore-db.sh s3://bucket/philotes/philotes-control-20261204T120000Z.dump
#   PHILOTES_RESTORE_URL=… deployments/scripts/restore-db.sh s3://bucket/philotes latest
#
#   PHILOTES_RESTORE_URL   the database to restore into; it must hold no `philotes` schema
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (any S3 server)
set -euo pipefail

die() { echo "restore-db.sh: $*" >&2; exit 2; }
src=${1:-}
[[ "$src" =~ ^s3://[^/]+ ]] || die "usage: restore-db.sh s3://bucket/prefix/philotes-control-STAMP.dump | restore-db.sh s3://bucket/prefix latest"
url=${PHILOTES_RESTORE_URL:-}
[[ -n "$url" ]] || die "set PHILOTES_RESTORE_URL to the (empty) database to restore into"
command -v pg_restore >/dev/null || die "pg_restore is not installed (Debian: postgresql-client)"
command -v psql >/dev/null || die "psql is not installed (Debian: postgresql-client)"
command -v aws >/dev/null || die "the aws CLI is not installed (pip install awscli)"

if [[ "${2:-}" == "latest" ]]; then
  dir=${src%/}
  object=$(aws s3 ls "$dir/" | awk '{print $4}' | grep -E '^philotes-control-[0-9]{8}T[0-9]{6}Z\.dump$' | sort | tail -n 1 || true)
  [[ -n "$object" ]] || die "no dump under $dir/"
  src="$dir/$object"
fi
name=${src##*/}

present=$(psql --no-password --dbname="$url" -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = 'philotes'")
[[ "$present" == "0" ]] || die "the target database already has a philotes schema: restore into an empty database (or drop the schema after stopping every role)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
aws s3 cp --only-show-errors "$src" "$work/$name"
aws s3 cp --only-show-errors "$src.sha256" "$work/$name.sha256" || die "no checksum beside $src ($src.sha256): not restoring an unchecked dump"
(cd "$work" && sha256sum --check --status "$name.sha256") || die "$src does not match its checksum: the dump is damaged; nothing was restored"
pg_restore --exit-on-error --single-transaction --no-owner --no-password --dbname="$url" "$work/$name"
echo "restore-db.sh: restored $src into the target database; next: docs/operations.md, Backups and recovery"
