# A release archive from the stage's bucket, fetched by the deploy user into the new release
# folder and checked against the sha256 the controller computed before anything is unpacked.
# The presigned URL comes on stdin as a curl config line: never on a command line, where any
# user of the host could read it. No AWS credentials are needed here.
# Runs as root: sh -c, parameters in the environment (APP_USER, REL, DIGEST, ARCHIVE).
# Exits 10 when the fetch fails, 11 when the digest differs (the file is removed).
set -u
# The deploy user's folder, made and filled by the deploy user: root follows no link there.
as_app() { runuser -u "$APP_USER" -- "$@"; }
as_app mkdir -p -m 0711 "$REL" || exit 1
cd "$REL" || exit 1
as_app curl --fail --silent --show-error --retry 3 --connect-timeout 10 --max-time 900 \
    --config - --output "$ARCHIVE" || exit 10
got=$(as_app sha256sum "$ARCHIVE" | cut -d' ' -f1)
if [ "$got" != "$DIGEST" ]; then
    as_app rm -f "$ARCHIVE"
    echo "sha256 $got"
    exit 11
fi
echo "ok $got"
