#!/usr/bin/env bash
# Back up the control database (pipelines, sources with their sealed passwords, users, API keys,
# the audit log, per-table progress, the buffered changes not yet in Iceberg, dead letters) to
# S3, with a SHA-256 checksum beside each dump, and delete the dumps older than the retention.
#
#   PHILOTES_BUFFER_URL=postgres://… PHILOTES_BACKUP_S3_URI=s3://bucket/philotes deployments/scripts/backup-db.sh
#
#   PHILOTES_BUFFER_URL / PHILOTES_BUFFER_URL_FILE  the control database (as for every role)
#   PHILOTES_BACKUP_S3_URI                          where the dumps go (s3://bucket[/prefix])
#   PHILOTES_BACKUP_RETENTION_DAYS                  dumps older than this are deleted (default 14; 0 keeps all)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (any S3 server)
#
# Needs pg_dump (the server's major version or newer) and the aws CLI. Prints the object it
# wrote; exit 0 only once the dump and its checksum are stored. Restore: restore-db.sh.
set -euo pipefail

die() { echo "backup-db.sh: $*" >&2; exit 2; }
url=${PHILOTES_BUFFER_URL:-}
if [[ -z "$url" && -n "${PHILOTES_BUFFER_URL_FILE:-}" ]]; then
  [[ -r "$PHILOTES_BUFFER_URL_FILE" ]] || die "cannot read PHILOTES_BUFFER_URL_FILE ($PHILOTES_BUFFER_URL_FILE)"
  url=$(<"$PHILOTES_BUFFER_URL_FILE")
fi
[[ -n "$url" ]] || die "set PHILOTES_BUFFER_URL (or PHILOTES_BUFFER_URL_FILE) to the control database's URL"
dest=${PHILOTES_BACKUP_S3_URI:-}
[[ "$dest" =~ ^s3://[^/]+ ]] || die "set PHILOTES_BACKUP_S3_URI to s3://bucket[/prefix] (got '${dest}')"
dest=${dest%/}
keep_days=${PHILOTES_BACKUP_RETENTION_DAYS:-14}
[[ "$keep_days" =~ ^[0-9]+$ ]] || die "PHILOTES_BACKUP_RETENTION_DAYS must be a whole number of days (got '$keep_days')"
command -v pg_dump >/dev/null || die "pg_dump is not installed (Debian: postgresql-client)"
command -v aws >/dev/null || die "the aws CLI is not installed (pip install awscli)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name="philotes-control-$(date -u +%Y%m%dT%H%M%SZ).dump"
# Custom format: compressed, and pg_restore can restore it table by table.
pg_dump --format=custom --no-password --dbname="$url" --file="$work/$name"
(cd "$work" && sha256sum "$name" > "$name.sha256")
aws s3 cp --only-show-errors "$work/$name" "$dest/$name"
aws s3 cp --only-show-errors "$work/$name.sha256" "$dest/$name.sha256"
echo "backup-db.sh: wrote $dest/$name ($(stat -c %s "$work/$name") bytes, sha256 $(cut -d' ' -f1 "$work/$name.sha256"))"

if (( keep_days > 0 )); then
  cutoff=$(date -u -d "-$keep_days days" +%Y%m%dT%H%M%SZ)
  # Names sort by time: a dump's stamp below the cutoff is older than the retention.
  aws s3 ls "$dest/" | awk '{print $4}' | while read -r object; do
    if [[ "$object" =~ ^philotes-control-([0-9]{8}T[0-9]{6}Z)\.dump(\.sha256)?$ && "${BASH_REMATCH[1]}" < "$cutoff" ]]; then
      aws s3 rm --only-show-errors "$dest/$object"
      echo "backup-db.sh: deleted $dest/$object (older than $keep_days days)"
    fi
  done
fi
